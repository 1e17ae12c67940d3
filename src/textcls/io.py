"""Writing files so that a crash or a full disk never leaves a half-written one behind: write beside, then rename."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from textcls.errors import TextclsError


def umask_mode(mode: int) -> int:
    """`mode` under the process umask: what open() and mkdir() would give. tempfile creates 0600 files and 0700
    folders (private until renamed); the renamed result must be as readable as a file written directly."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


@contextlib.contextmanager
def _write_error(path: Path, what: str) -> Iterator[None]:
    """An OSError (disk full, permission, a file where a folder should be) as a TextclsError that names `path`."""
    try:
        yield
    except OSError as e:
        raise TextclsError(f"could not write {str(path)!r}: {e.strerror or e}; the previous {what}, if any, is "
                           f"unchanged") from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename, on failure it is removed.
    An OSError (disk full, permission) becomes a TextclsError that names the file; the old file stays intact."""
    path = Path(path)
    with _write_error(path, "file"):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    tmp = Path(tmp)
    try:
        with _write_error(path, "file"):
            tmp.chmod(umask_mode(0o666))
            yield tmp
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it takes `path`'s place (an old folder there is removed
    only after the new one is complete), on failure it is removed."""
    path = Path(path)
    with _write_error(path, "copy"):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    old = path.with_name(f".{path.name}.old")
    try:
        with _write_error(path, "copy"):
            tmp.chmod(umask_mode(0o777))
            yield tmp
            if path.exists():
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
