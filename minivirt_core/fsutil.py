"""Small file-system helpers: atomic writes, output files, the database lock, sizes, write errors."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from .errors import DatabaseError, InvalidInput, MinivirtError, NotFound

T = TypeVar("T")
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
TEMP_SUFFIX = ".tmp"


def create_temp(path: Path, mode: int = 0o600) -> tuple[Path, int]:
    """A new hidden temp file beside ``path`` (``.<name>.<random>.tmp``) and an fd open
    for writing it. The fd holds an ``flock`` until closed, so a temp file left by a
    writer that died is told from one being written (:func:`remove_abandoned_temps`)."""
    tmp = path.parent / f".{path.name}.{os.urandom(6).hex()}{TEMP_SUFFIX}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return tmp, fd


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half."""
    tmp, fd = create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, path)  # (before the close drops the lock)
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
    """An advisory ``flock`` on a file, exclusive across processes, threads and asyncio tasks.

    Re-entrant only for its owner: the thread that took it or, on a thread running an
    asyncio event loop, the task that took it. Another thread waits (or gets False with
    ``blocking=False``). Another task of the same loop would wait for a holder that can
    only let go when that very loop runs again, so it gets a ``RuntimeError`` instead:
    no coroutine may hold the lock across an ``await``; async code takes it in a worker
    thread (``asyncio.to_thread``), which also keeps ``flock`` waits off the loop.

    Locks are released by the kernel when the process dies, so a killed ``miv`` never
    leaves the database locked.
    """

    def __init__(self, path: Path, shared: bool = False) -> None:
        self.path = path
        self.shared = shared  # shared with other processes; within one, holders still take turns
        self._mutex = threading.Lock()  # held by the owner's thread while the lock is held
        self._owner: tuple[int, object] | None = None
        self._fd: int | None = None
        self._depth = 0

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; with ``blocking=False`` return False instead of waiting."""
        me = _owner()
        if self._owner == me:
            self._depth += 1
            return True
        owner = self._owner
        if owner is not None and owner[0] == me[0]:
            raise RuntimeError(f"{self.path} is held by another coroutine of this event loop across an await; "
                               "take it in a worker thread (asyncio.to_thread)")
        if not self._mutex.acquire(blocking):
            return False
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB))
            except BaseException:
                os.close(fd)
                raise
        except BlockingIOError:
            self._mutex.release()
            return False
        except BaseException:
            self._mutex.release()
            raise
        self._fd = fd
        self._owner = me
        self._depth = 1
        return True

    def release(self) -> None:
        """Release the lock (the outermost release unlocks); only its owner may."""
        if self._owner != _owner():
            raise RuntimeError(f"{self.path} is not held by this thread or task")
        self._depth -= 1
        if self._depth == 0:
            fd, self._fd, self._owner = self._fd, None, None
            if fd is not None:
                os.close(fd)
            self._mutex.release()

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _owner() -> tuple[int, object]:
    """Who takes a lock now: this thread, and the asyncio task running on it, if any."""
    asyncio = sys.modules.get("asyncio")  # never imported for this: `miv images` does without it
    task = None
    if asyncio is not None and asyncio.events._get_running_loop() is not None:
        task = asyncio.current_task()
    return threading.get_ident(), task


@contextmanager
def claim_abandoned(path: Path) -> Iterator[bool]:
    """Lock ``path`` if no live process holds it: yields True (while locked) for a file
    whose writer is gone, False for one a live writer holds (or that is gone itself).

    Writers of partial files (downloads, temp files) hold an ``flock`` on them until they
    finish; the kernel drops it when a writer dies, which is how its leftovers are told
    from work in progress."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def remove_abandoned(path: Path, dry_run: bool = False) -> int | None:
    """Remove ``path`` if its writer is gone (see :func:`claim_abandoned`); the bytes it
    held, or None when a live writer holds it. ``dry_run`` only measures."""
    with claim_abandoned(path) as abandoned:
        if not abandoned:
            return None
        try:
            size = path.lstat().st_blocks * 512
            if not dry_run:
                path.unlink()
        except FileNotFoundError:
            return None
        return size


def remove_abandoned_temps(folder: Path) -> list[Path]:
    """Remove the temp files of :func:`create_temp` in ``folder`` whose writer is gone
    (killed half-way); returns them."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return removed
    for entry in entries:
        path = Path(entry.path)
        if (entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX) and entry.is_file(follow_symlinks=False)
                and remove_abandoned(path) is not None):
            removed.append(path)
    return removed


def open_regular(path: Path) -> Any:
    """``open(path, "rb")`` for a regular file only: a FIFO, a device or a folder (which
    could block the open, or never end) is an :class:`InvalidInput`, found without
    reading from it. :class:`FileNotFoundError` passes through."""
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise InvalidInput(f"{path} is not a regular file", hint="Only regular files are read there.")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def is_disk_full(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) is "no space left on device" or a quota."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in DISK_FULL:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextmanager
def disk_full_is_an_error(what: object) -> Iterator[None]:
    """Within: a full disk (ENOSPC, a quota) met writing ``what`` is a clear error
    (:func:`write_error`), not a traceback."""
    try:
        yield
    except OSError as e:
        if e.errno not in DISK_FULL:
            raise
        raise write_error(e, what, hint="Free some space (`miv prune` removes unused images and leftovers), "
                                        "then try again.") from e


async def flock_async(fd: int, poll: float = 0.05) -> None:
    """Take an exclusive ``flock`` on ``fd``, waiting without blocking the event loop
    (and cancellable, which a wait in a worker thread would not be)."""
    import asyncio  # here: `miv images` imports this module and needs no asyncio

    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            await asyncio.sleep(poll)


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


def write_error(e: OSError, what: object, hint: str | None = None) -> MinivirtError:
    """A clear :class:`~minivirt_core.errors.MinivirtError` for a failed write of ``what``
    (a path, or words naming it): a full disk above all, to raise instead of the ``OSError``."""
    import errno

    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return DatabaseError(f"no space left on the device while writing {what}",
                             hint=hint or "Free some space and try again.")
    return DatabaseError(f"cannot write {what}: {e.strerror or e}", hint=hint)


_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"), (stat.S_ISFIFO, "a FIFO"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "a regular file")


def write_output(path: Path, write: Callable[[BinaryIO], T]) -> T:
    """Write a command's output (``-o PATH``) with ``write(file)``, never replacing anything
    that is not a regular file. A regular file (or a new one) is written beside it as
    ``.<name>.<random>.part`` and renamed into place when complete; a character device or a
    FIFO (``/dev/null``, a named pipe) is written into; a symbolic link, a folder, a block
    device or a socket is refused. Blocking (a FIFO waits for its reader): run it in a thread."""
    try:
        kind: str | None = _kind(os.lstat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        kind = None
    if kind in ("a character device", "a FIFO"):
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC)
        with os.fdopen(fd, "wb") as f:
            if _kind(os.fstat(fd).st_mode) != kind:
                raise InvalidInput(f"{path} changed while it was opened; nothing was written")
            if f.isatty():
                raise InvalidInput(f"refusing to write to {path}: it is a terminal")
            try:
                return write(f)
            except OSError as e:
                raise write_error(e, path) from e
    if kind not in (None, "a regular file"):
        raise InvalidInput(f"refusing to write to {path}: it is {kind}, not a regular file",
                           hint="Name a regular file (a character device or a FIFO is written into).")
    part = path.parent / f".{path.name}.{os.urandom(6).hex()}.part"
    try:
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except (FileNotFoundError, NotADirectoryError) as e:
        raise NotFound(f"cannot write {path}: the folder {path.parent} does not exist",
                       hint="Create the folder first, or name a file in an existing one.") from e
    except OSError as e:
        raise write_error(e, path) from e
    try:
        with os.fdopen(fd, "wb") as f:
            result = write(f)
        try:
            now = _kind(os.lstat(path).st_mode)
        except FileNotFoundError:
            now = None
        if now not in (None, "a regular file"):
            raise InvalidInput(f"refusing to replace {path}: it became {now} meanwhile")
        os.replace(part, path)
        return result
    except OSError as e:
        raise write_error(e, path) from e
    finally:
        part.unlink(missing_ok=True)


# Files are written in pieces of this size: a 1 MiB write(2) into the page cache cost ~3x the
# system time of 256 KiB ones here (measured: 1.7 s vs 0.5 s for 1 GiB), the source no
# longer being in the CPU's cache by the time the copy ends.
WRITE_PIECE = 256 << 10
HOLE_UNIT = 64 << 10  # zeros are left as a hole per aligned unit of this size (a qcow2 cluster)
_ZERO_UNIT = bytes(HOLE_UNIT)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` at ``fd``'s position, in pieces of :data:`WRITE_PIECE`."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view[:WRITE_PIECE]):]


def write_sparse(fd: int, data: bytes | memoryview, offset: int) -> bool:
    """Write ``data`` at ``offset`` of ``fd``, leaving a hole for every :data:`HOLE_UNIT`
    of zeros aligned in the file (as ``cp --sparse`` and ``tar -S`` do: less to copy into
    the page cache, less disk used; the file reads the same). A file that may end in a
    hole needs its size set at the end (``os.ftruncate``). True if a hole was left."""
    view = memoryview(data)
    start = 0  # the first byte not written yet
    unit = -offset % HOLE_UNIT  # the first unit boundary in data
    holes = False
    while unit + HOLE_UNIT <= len(view):
        end = unit + HOLE_UNIT
        if not view[unit] and bytes(view[unit:end]) == _ZERO_UNIT:  # the first byte decides most
            _pwrite_all(fd, view[start:unit], offset + start)
            start = end
            holes = True
        unit = end
    _pwrite_all(fd, view[start:], offset + start)
    return holes


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        n = os.pwrite(fd, view[:WRITE_PIECE], offset)
        view = view[n:]
        offset += n


PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = 1031  # Linux; fcntl.F_SETPIPE_SZ from Python 3.10 on Linux only


def widen_pipe(fd: int, size: int = PIPE_SIZE) -> None:
    """If ``fd`` is a pipe, let it hold ``size`` bytes (Linux; best effort): a 64 KiB pipe
    between ``miv save`` and ``miv load`` costs a context switch per 64 KiB moved."""
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, _F_SETPIPE_SZ, size)
    except OSError:
        pass  # not Linux, or over the system's pipe-max-size: keep the pipe as it is
