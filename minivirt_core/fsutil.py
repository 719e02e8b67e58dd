"""Small file-system helpers: atomic writes, the database lock, sizes."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half."""
    tmp = str(path.parent / f".{path.name}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_json(path: Path, value: Any, mode: int = 0o644) -> None:
    """Write ``value`` as indented JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(value, indent=2) + "\n").encode(), mode)


def atomic_write_text(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` atomically."""
    atomic_write_bytes(path, text.encode(), mode)


class FileLock:
    """An advisory ``flock`` on a file; exclusive by default, re-entrant per object.

    Locks are released by the kernel when the process dies, so a killed ``miv``
    never leaves the database locked.
    """

    def __init__(self, path: Path, shared: bool = False) -> None:
        self.path = path
        self.shared = shared
        self._fd: int | None = None
        self._depth = 0

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; with ``blocking=False`` return False instead of waiting."""
        if self._depth:
            self._depth += 1
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        flags = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        if not blocking:
            flags |= fcntl.LOCK_NB
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._depth = 1
        return True

    def release(self) -> None:
        """Release the lock (the outermost release unlocks)."""
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def dir_size(path: Path) -> int:
    """Bytes allocated on disk by the regular files directly inside ``path``."""
    total = 0
    try:
        with os.scandir(path) as it:
            for entry in it:
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_blocks * 512
    except FileNotFoundError:
        pass
    return total


def remove_tree(path: Path) -> None:
    """Remove a folder and everything in it; a missing folder is fine."""
    import shutil  # here: it pulls in compression modules `miv images` never needs

    shutil.rmtree(path, ignore_errors=True)
    if path.exists() or path.is_symlink():
        shutil.rmtree(path)  # raise the real error


def human_size(n: float) -> str:
    """Sizes as ``ls -h`` and the original ``miv images`` print them: 115M, 1.4G."""
    for unit in ("B", "K", "M", "G", "T"):
        if n < 1024 or unit == "T":
            if unit == "B":
                return f"{int(n)}B"
            return f"{n:.1f}{unit}" if n < 10 else f"{n:.0f}{unit}"
        n /= 1024
    raise AssertionError("unreachable")
