"""Small, safe reads of metadata files: regular files only, O_NOFOLLOW, bounded size."""

from __future__ import annotations

import os
import stat

_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_METADATA_BYTES = 64 * 1024 * 1024


class NotRegular(OSError):
    """The path is not a regular file (symlink, dir, fifo...)."""


def read_bytes(path: str | os.PathLike[str], limit: int = MAX_METADATA_BYTES) -> bytes:
    """Read a regular file without following a final symlink, opening a FIFO or reading past ``limit``."""
    try:  # O_NOATIME: reading evidence must not change it (needs ownership or CAP_FOWNER)
        fd = os.open(path, _FLAGS | os.O_NOATIME)
    except PermissionError:
        fd = os.open(path, _FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegular(0, "not a regular file", str(path))
        if st.st_size > limit:
            raise NotRegular(0, f"larger than {limit} bytes", str(path))
        chunks = []
        total = 0
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise NotRegular(0, f"larger than {limit} bytes", str(path))
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(path: str | os.PathLike[str], limit: int = MAX_METADATA_BYTES) -> str:
    """File content as text (invalid UTF-8 replaced), surrounding whitespace stripped."""
    return read_bytes(path, limit).decode("utf-8", "replace").strip()


def read_optional(path: str | os.PathLike[str]) -> str | None:
    """read_text, or None when the file does not exist."""
    try:
        return read_text(path)
    except FileNotFoundError:
        return None
