"""Copying files between the host and a guest over SFTP (``miv cp``).

A guest is untrusted: what comes out of it never carries setuid, setgid or sticky bits and
is never writable by others, folders included, whatever the guest's modes or the umask. Files
are written to a private temporary name and renamed into place, below folders opened without
following links, so a guest (or another local user) cannot make minivirt write elsewhere.
Inside a copied folder, only links that stay inside it are recreated; anything else that is
not a file or a folder is skipped and reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import posixpath
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ExternalError, MinivirtError, NotFound

if TYPE_CHECKING:
    import asyncssh

CHUNK = 1 << 20
MAX_DEPTH = 256
# Bits a copy out of a guest never keeps: setuid, setgid, sticky, and write for others.
UNSAFE_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX | stat.S_IWOTH


def safe_mode(guest_mode: int | None, default: int) -> int:
    """The host mode for a file or folder whose mode in the guest is ``guest_mode``."""
    mode = stat.S_IMODE(guest_mode) if guest_mode is not None else default
    return mode & ~UNSAFE_BITS


@dataclass
class CopyResult:
    """What a copy did: files and folders written, entries left out (with why)."""

    files: int = 0
    folders: int = 0
    skipped: list[str] = field(default_factory=list)


async def copy(conn: asyncssh.SSHClientConnection, src: str, dest: str, upload: bool,
               guest: str = "the guest") -> CopyResult:
    """Copy a file or folder to (``upload``) or from the guest; ``guest`` names it in errors."""
    import asyncssh

    if upload and not os.path.lexists(src):
        raise NotFound(f"no such file or folder on this machine: {src}")
    try:
        sftp = await conn.start_sftp_client()
    except (asyncssh.ChannelOpenError, asyncssh.SFTPError) as e:
        raise ExternalError(f"cannot copy: {guest} has no SFTP server ({e.reason})",
                            hint="Install one in the guest (e.g. openssh-sftp-server).") from e
    try:
        if upload:
            await sftp.put(src, dest, recurse=True, preserve=True)
            return CopyResult(files=1)
        return await _download(sftp, src, dest)
    except asyncssh.SFTPNoSuchFile as e:
        raise NotFound(f"no such file or folder in {guest}: {dest if upload else src}") from e
    except asyncssh.SFTPPermissionDenied as e:
        raise ExternalError(f"permission denied in {guest}: {e.reason}") from e
    except (asyncssh.SFTPError, asyncssh.ChannelOpenError) as e:
        raise ExternalError(f"copy failed in {guest}: {e.reason}") from e
    except OSError as e:
        raise ExternalError(f"copy failed on this machine: {e.strerror or e}: {e.filename or ''}".rstrip(": ")) from e
    finally:
        # Wait for the SFTP channel to close: a session opened on the connection while the
        # guest's server still tears this one down can be refused ("Session request failed").
        sftp.exit()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sftp.wait_closed(), 10)


async def _download(sftp: Any, src: str, dest: str) -> CopyResult:
    attrs = await sftp.stat(src)  # the path the user named may be a link: follow it
    target = dest
    if os.path.isdir(dest):
        name = posixpath.basename(src.rstrip("/")) or "root"
        target = os.path.join(dest, name)
    parent, name = os.path.split(os.path.abspath(target))
    result = CopyResult()
    with _open_dir(parent, follow=True) as dir_fd:
        await _get(sftp, src, attrs, dir_fd, name, "", result, 0)
    return result


async def _get(sftp: Any, src: str, attrs: Any, dir_fd: int, name: str, rel: str, result: CopyResult,
               depth: int) -> None:
    import asyncssh

    kind = attrs.type
    if kind == asyncssh.FILEXFER_TYPE_REGULAR:
        await _get_file(sftp, src, attrs, dir_fd, name)
        result.files += 1
    elif kind == asyncssh.FILEXFER_TYPE_DIRECTORY:
        if depth >= MAX_DEPTH:
            raise ExternalError(f"folders nest deeper than {MAX_DEPTH} levels at {src}")
        created = _make_dir(dir_fd, name)
        with _open_dir(name, dir_fd=dir_fd) as sub_fd:
            async for entry in sftp.scandir(src):
                child = entry.filename
                if child in (".", ".."):
                    continue
                if not _plain_name(child):
                    result.skipped.append(f"{rel}{child!r}: not a valid file name")
                    continue
                await _get(sftp, posixpath.join(src, child), entry.attrs, sub_fd, child, f"{rel}{child}/",
                           result, depth + 1)
            if created:
                os.fchmod(sub_fd, safe_mode(attrs.permissions, 0o755))
                _set_times(sub_fd, attrs)
        result.folders += 1
    elif kind == asyncssh.FILEXFER_TYPE_SYMLINK:
        link = await sftp.readlink(src)
        inside = posixpath.normpath(posixpath.join(posixpath.dirname(rel.rstrip("/")), link))
        if link.startswith("/") or inside == ".." or inside.startswith("../"):
            result.skipped.append(f"{rel.rstrip('/')}: a link that leads out of the copy ({link})")
            return
        _remove_non_dir(dir_fd, name)
        os.symlink(link, name, dir_fd=dir_fd)
    else:
        result.skipped.append(f"{rel.rstrip('/')}: not a file, folder or link")


async def _get_file(sftp: Any, src: str, attrs: Any, dir_fd: int, name: str) -> None:
    tmp = f".{name[:200]}.{os.urandom(6).hex()}.miv-part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    try:
        async with sftp.open(src, "rb") as remote:
            while chunk := await remote.read(CHUNK):
                await asyncio.to_thread(_write_all, fd, chunk)
        os.fchmod(fd, safe_mode(attrs.permissions, 0o644))
        _set_times(fd, attrs)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        os.unlink(tmp, dir_fd=dir_fd)
        raise
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _plain_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\0" not in name and name not in (".", "..")


def _make_dir(dir_fd: int, name: str) -> bool:
    """Create folder ``name`` (private until its copy is done); False if it already was one."""
    try:
        os.mkdir(name, 0o700, dir_fd=dir_fd)
        return True
    except FileExistsError:
        return False


def _remove_non_dir(dir_fd: int, name: str) -> None:
    try:
        if not stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


@contextmanager
def _open_dir(path: str, dir_fd: int | None = None, follow: bool = False) -> Iterator[int]:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except FileNotFoundError as e:
        raise NotFound(f"no such folder on this machine: {path}") from e
    except NotADirectoryError as e:
        raise MinivirtError(f"{path} exists on this machine and is not a folder") from e
    except OSError as e:
        if e.errno == errno.ELOOP:  # a link where a copied folder goes
            raise MinivirtError(f"{path} on this machine is a link: not writing through it") from e
        raise
    try:
        yield fd
    finally:
        os.close(fd)


def _set_times(fd: int, attrs: Any) -> None:
    if attrs.atime is not None and attrs.mtime is not None:
        os.utime(fd, (attrs.atime, attrs.mtime))
