"""The database: a folder of images, VMs, remotes and caches, safe for many processes.

The database folder and its folders are private to their owner (0700, whatever the
umask): they hold VM disks, logs, SSH keys and remotes. Every mutation takes
:meth:`Database.lock` (an ``flock``, released by the kernel if the process dies). Images
and VMs are assembled in :meth:`Database.staging` folders outside ``images/`` and
``vms/`` and renamed into place only when complete, so a reader never sees half an
image, and a crash leaves only a staging folder that ``prune`` removes.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import layout
from .errors import DatabaseError
from .fsutil import FileLock, remove_tree

PRIVATE_DIR = 0o700  # the database and its folders: nobody else may look inside


def default_root() -> Path:
    """``$MINIVIRT_DB_PATH``, else ``$XDG_STATE_HOME/minivirt``, else ``~/.local/state/minivirt``."""
    if env := os.environ.get("MINIVIRT_DB_PATH"):
        return Path(env).expanduser()
    if xdg := os.environ.get("XDG_STATE_HOME"):
        return Path(xdg).expanduser() / "minivirt"
    return Path.home() / ".local" / "state" / "minivirt"


class Staging:
    """A folder being filled; locked while its owner lives, so ``prune`` leaves it alone."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the folder itself is removed or renamed by the owner)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Database:
    """A minivirt database rooted at ``root`` (created when missing)."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.root = self.root.absolute()
        self._lock = _lock_of(self.root / layout.LOCK)
        self._ready = False

    def __repr__(self) -> str:
        return f"Database({str(self.root)!r})"

    # Paths -----------------------------------------------------------------

    @property
    def images_dir(self) -> Path:
        return self.root / layout.IMAGES

    @property
    def vms_dir(self) -> Path:
        return self.root / layout.VMS

    @property
    def staging_dir(self) -> Path:
        return self.root / layout.STAGING

    @property
    def cache_dir(self) -> Path:
        return self.root / layout.CACHE

    @property
    def remotes_file(self) -> Path:
        return self.root / layout.REMOTES

    # Set-up ----------------------------------------------------------------

    def ensure(self) -> Database:
        """Create the folders a database needs; raise :class:`DatabaseError` if unusable."""
        if self._ready:
            return self
        hint = "Fix its permissions, or set MINIVIRT_DB_PATH to a folder you can write."
        try:
            if self.root.exists() and not self.root.is_dir():
                raise DatabaseError(
                    f"the database path {self.root} is not a folder",
                    hint="Set MINIVIRT_DB_PATH to a folder (it is created when missing).",
                )
            self.root.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
            for d in (self.root, self.images_dir, self.vms_dir, self.staging_dir):
                d.mkdir(mode=PRIVATE_DIR, exist_ok=True)
                _make_private(d)
        except OSError as e:
            raise DatabaseError(f"cannot create the database at {self.root}: {e.strerror}", hint=hint) from e
        for d in (self.root, self.images_dir, self.vms_dir):
            if not os.access(d, os.R_OK | os.W_OK | os.X_OK):
                raise DatabaseError(f"the database folder {d} is not readable and writable by you", hint=hint)
        self._ready = True
        return self

    # Concurrency -----------------------------------------------------------

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the database's lock: exclusive across processes, threads and asyncio tasks,
        re-entrant for the thread (or task) holding it; see :class:`~.fsutil.FileLock`.

        It may wait for another ``miv``: async code takes it in a worker thread, e.g.
        ``await asyncio.to_thread(store.prune)``, never across an ``await``."""
        self.ensure()
        with self._lock:
            yield

    @contextmanager
    def staging(self, kind: str) -> Iterator[Staging]:
        """A fresh locked staging folder; removed on exit unless the owner renamed it."""
        self.ensure()
        path = self.staging_dir / f"{kind}-{os.urandom(8).hex()}"
        path.mkdir(mode=PRIVATE_DIR)  # becomes an image's or a VM's folder
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX)
        staging = Staging(path, fd)
        try:
            yield staging
        finally:
            try:
                if path.exists():
                    remove_tree(path)
            finally:
                staging.release()

    def held_image_ids(self) -> set[str]:
        """Image ids that live staging folders hold (a build testing its new image)."""
        held: set[str] = set()
        stale = set(self.stale_staging())
        try:
            entries = list(os.scandir(self.staging_dir))
        except FileNotFoundError:
            return held
        for entry in entries:
            marker = Path(entry.path) / layout.HOLD
            if Path(entry.path) not in stale and marker.is_file():
                held.add(marker.read_text().strip())
        return held

    def stale_staging(self) -> list[Path]:
        """Staging folders whose owner is gone (nobody holds their lock)."""
        stale = []
        try:
            entries = list(os.scandir(self.staging_dir))
        except FileNotFoundError:
            return []
        for entry in entries:
            path = Path(entry.path)
            if not entry.is_dir(follow_symlinks=False):
                stale.append(path)
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                stale.append(path)
            except BlockingIOError:
                pass
            finally:
                os.close(fd)
        return stale

    # Small shared readers -------------------------------------------------

    def vm_image_ids(self) -> dict[str, str | None]:
        """``{vm name: image id}`` for every VM folder (None when its config is unreadable)."""
        result: dict[str, str | None] = {}
        try:
            entries = list(os.scandir(self.vms_dir))
        except FileNotFoundError:
            return result
        for entry in entries:
            if not entry.is_dir() or entry.name.startswith("."):
                continue
            config = read_json(Path(entry.path) / layout.VM_CONFIG)
            image = config.get("image") if isinstance(config, dict) else None
            result[entry.name] = image if isinstance(image, str) else None
        return result


def _make_private(folder: Path) -> None:
    """Only the owner may enter ``folder`` (VM disks, logs, keys and remotes live below),
    whatever the umask was when it was made; databases made before this are tightened."""
    mode = folder.stat().st_mode
    if mode & 0o077:
        try:
            os.chmod(folder, stat.S_IMODE(mode) & ~0o077 | 0o700)
        except PermissionError:
            pass  # not ours (a database shared on purpose): leave it as its owner made it


_LOCKS: dict[Path, FileLock] = {}
_LOCKS_MUTEX = threading.Lock()


def _lock_of(path: Path) -> FileLock:
    """One lock object per lock file in this process, so that two :class:`Database` objects
    of one folder share it (re-entrant for one thread, exclusive for the others)."""
    with _LOCKS_MUTEX:
        return _LOCKS.setdefault(path, FileLock(path))


def read_json(path: Path) -> Any:
    """Parsed JSON of ``path``, or ``None`` when it is missing or not JSON (or nested too deep)."""
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except (OSError, ValueError, RecursionError):
        return None
