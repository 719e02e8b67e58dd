"""Where a recipe may write and read files: its build folder and its own folder, nothing else.

A recipe is code from elsewhere. Its ``filename`` keys name files of the build folder
(plain names: no folders, nothing hidden, none of the build VM's own files but its
disk); its ``copy`` sources and ``file:`` URLs name files of the recipe's folder, and
must still be inside it once ``..`` and symlinks are resolved. An absolute ``src`` is an
error. (A ``host`` step runs bash on this machine and can do anything: the README says
so where a user decides to build a recipe.)

Each check returns why a value is refused, or None; the caller adds the file and line.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from urllib.parse import quote, unquote, urlparse

from .. import layout

# The build VM's own files (config, pid, sockets, logs, keys...), whatever layout adds;
# its disk is the one a recipe may write (create_disk_image, download).
RESERVED = frozenset(v for k, v in vars(layout).items() if k.startswith("VM_") and isinstance(v, str)) - {
    layout.VM_DISK}

BUILD_FILE_HINT = "Name a file of the build folder by a plain name, e.g. disk.qcow2 or cloud-init.iso."
RECIPE_FILE_HINT = ("Put the file in the recipe's folder (a copy: a link that leads out is refused too) "
                    "and name it relative to the recipe.")


def build_file_problem(name: str) -> str | None:
    """Why ``name`` cannot be a ``filename`` of the build folder, or None."""
    if not name or name in (".", "..") or "/" in name or "\0" in name or name.startswith("."):
        return f"{name!r} must be a plain file name in the build folder (no '/', not starting with '.')"
    if name in RESERVED:
        return f"{name!r} is a file of the build VM itself"
    return None


def download_name(url: str) -> str:
    """The file a ``download`` without ``filename`` writes: the last part of its URL."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def _inside(directory: Path, path: str) -> tuple[Path, bool]:
    """``path`` (relative to ``directory``, or absolute) with ``..`` and symlinks resolved,
    and whether it is still inside ``directory``."""
    base = directory.resolve()
    resolved = (base / path).resolve()
    return resolved, resolved.is_relative_to(base)


def recipe_file(directory: Path, value: str) -> tuple[Path, str | None]:
    """The file ``value`` (relative to the recipe's folder) names, resolved; and why it is
    refused (absolute, or outside the folder after ``..`` and symlinks), or None."""
    if not value or "\0" in value:
        return directory, f"{value!r} is not a file name"
    if PurePosixPath(value).is_absolute():
        return Path(value), f"{value!r} is an absolute path; it must be relative to the recipe's folder"
    resolved, inside = _inside(directory, value)
    return resolved, None if inside else f"{value!r} leads outside the recipe's folder (to {resolved})"


def file_url(directory: Path, url: str) -> tuple[str, str | None]:
    """A ``file:`` URL of a recipe as an absolute URL of the file it names (a relative path
    is relative to the recipe's folder); and why it is refused, or None."""
    parsed = urlparse(url)
    path = unquote(parsed.path)
    if parsed.netloc not in ("", "localhost") or not path or "\0" in path:
        return url, f"{url!r} does not name a file of this machine"
    resolved, inside = _inside(directory, path)
    return "file://" + quote(str(resolved)), None if inside else f"{url!r} names a file outside the recipe's folder"
