"""Atomic writes: the result replaces the old file only when complete, and is as readable as a plain write."""

import os
import stat

import pytest

from textcls.errors import TextclsError
from textcls.io import atomic_dir, atomic_path, atomic_write_text


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_files_and_folders_get_the_modes_a_direct_write_gets(tmp_path, umask_022):
    (tmp_path / "direct.txt").write_text("x")
    (tmp_path / "direct").mkdir()
    atomic_write_text(tmp_path / "atomic.txt", "x")
    with atomic_dir(tmp_path / "atomic") as tmp:
        (tmp / "weights").write_text("w")
    assert mode(tmp_path / "atomic.txt") == mode(tmp_path / "direct.txt") == 0o644
    assert mode(tmp_path / "atomic") == mode(tmp_path / "direct") == 0o755


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["summary.json"]


def test_an_os_error_names_the_file(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old").write_text("kept")
    with pytest.raises(TextclsError, match="could not write .*model.*unchanged"):
        with atomic_dir(target) as tmp:
            raise OSError(28, "No space left on device")
    assert (target / "old").read_text() == "kept" and not tmp.exists()


def write_folder(path, text):
    with atomic_dir(path) as tmp:
        (tmp / "weights").write_text(text)


@pytest.mark.parametrize("write", [atomic_write_text, write_folder])
def test_a_parent_that_is_a_file_is_a_clear_error(tmp_path, write):
    (tmp_path / "afile").write_text("")
    with pytest.raises(TextclsError, match="could not write .*afile/out.*: File exists"):
        write(tmp_path / "afile" / "out", "x")
