"""Files written whole or not at all: a crash, a full disk or a second process never leaves a
half-written file, and a new file never replaces one that is already there."""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

# Hard links unsupported (FAT, some network shares): fall back to an exclusive create.
_NO_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK)


def _temp_beside(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _create(path: Path, data: bytes) -> None:
    """Make the new file `path` (never an existing one: O_EXCL) holding `data`, flushed to disk;
    on any failure the half-written file is removed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        _unlink(path)
        raise


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` so that a crash leaves either the old file or the whole new one.

    The bytes go to a hidden temporary file in the same folder, are flushed to disk, then
    renamed over `path` (os.replace). Missing parent folders are created.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_beside(target)
    _create(temp, data)
    try:
        os.replace(temp, target)
    except BaseException:
        _unlink(temp)
        raise
    return target


def write_new(path: Path, data: bytes) -> Path:
    """Create `path` holding `data`, complete or not at all; FileExistsError when the name is
    taken (also by a dangling symlink) -- an existing file is never replaced or written through."""
    path = Path(path)
    temp = _temp_beside(path)
    _create(temp, data)
    try:
        try:
            os.link(temp, path)  # atomic, and fails with EEXIST instead of replacing
        except OSError as e:
            if isinstance(e, FileExistsError) or e.errno not in _NO_LINKS:
                raise
            _create(path, data)  # a file system without hard links
    finally:
        _unlink(temp)
    return path


__all__ = ["write_atomic", "write_new"]
