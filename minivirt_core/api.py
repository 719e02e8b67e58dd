"""The entry point of the Python API: one object holding the database and its services."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from .database import Database
from .images import ImageStore

if TYPE_CHECKING:
    from .remotes import RemoteStore
    from .vms import VmManager


class Minivirt:
    """The database at ``root`` (default: :func:`~minivirt_core.database.default_root`).

    Services are built on first use, so a command that lists images does not pay for
    importing the VM runtime or the S3 client.
    """

    def __init__(self, root: Path | str | None = None) -> None:
        self.db = Database(root)

    @cached_property
    def images(self) -> ImageStore:
        return ImageStore(self.db)

    @cached_property
    def vms(self) -> VmManager:
        from .vms import VmManager

        return VmManager(self.db, self.images)

    @cached_property
    def remotes(self) -> RemoteStore:
        from .remotes import RemoteStore

        return RemoteStore(self.db, self.images)
