"""Writing files so that a crash or a full disk never leaves a half-written one behind: write beside, then rename."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from safetensors import SafetensorError

from textcls.errors import TextclsError


def umask_mode(mode: int) -> int:
    """`mode` under the process umask: what open() and mkdir() would give. tempfile creates 0600 files and 0700
    folders (private until renamed); the renamed result must be as readable as a file written directly."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def _reason(e: BaseException) -> str:
    """What went wrong, and what to do about it when that is clear."""
    text = getattr(e, "strerror", None) or str(e)
    errno_ = getattr(e, "errno", None)
    if errno_ == errno.ENOSPC or "No space left" in text or "StorageFull" in text:
        return "No space left on device (the disk is full: free some space)"
    if errno_ in (errno.EACCES, errno.EPERM, errno.EROFS) or "Permission denied" in text:
        return f"{text} (choose a folder you may write to, or change its permissions)"
    return text


@contextlib.contextmanager
def writing(path: str | os.PathLike, what: str = "") -> Iterator[None]:
    """The one place where writing goes wrong for the user's reasons (disk full, no permission, a file where a
    folder should be): an OSError, or safetensors' error for the same causes, raised while writing `path` becomes a
    TextclsError that names the path and what to do; `what` adds what stays safe. Used by run folders, the
    tokenization cache and checkpoints alike."""
    try:
        yield
    except TextclsError:
        raise
    except (OSError, SafetensorError) as e:
        at = getattr(e, "filename", None)
        at = f" ({str(at)!r})" if at and str(at) != str(path) else ""
        raise TextclsError(f"could not write {str(path)!r}: {_reason(e)}{at}" + (f"; {what}" if what else "")) from None


@contextlib.contextmanager
def reading(path: str | os.PathLike) -> Iterator[None]:
    """Reading's counterpart of `writing`: an OSError (no permission, a folder that vanished) while reading
    `path` becomes a TextclsError that says it cannot be read, and why (not that it is damaged)."""
    try:
        yield
    except TextclsError:
        raise
    except OSError as e:
        where = getattr(e, "filename", None) or path
        reason = os.strerror(e.errno) if e.errno else str(e)  # pyarrow's own text runs long
        raise TextclsError(f"cannot read {str(where)!r}: {reason}") from None


def _write_error(path: Path, what: str):
    return writing(path, f"the previous {what}, if any, is unchanged")


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
