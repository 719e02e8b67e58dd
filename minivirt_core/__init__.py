"""minivirt's engine: images, VMs on QEMU, recipes and remotes, with an asyncio API.

Start from :class:`Minivirt`::

    from minivirt_core import Minivirt
    miv = Minivirt()                 # the default database
    for image in miv.images.list():
        print(image.short_id, image.tags)

This package imports no UI library; the ``miv`` command and the dashboard live in
``minivirt_tui`` and only call what is here.
"""

from .api import Minivirt
from .database import Database, default_root
from .errors import (
    Conflict,
    DatabaseError,
    ExternalError,
    InvalidInput,
    InvalidName,
    MinivirtError,
    NotFound,
    Timeout,
)
from .images import Image, ImageStore

__version__ = "0.2.0"

__all__ = [
    "Conflict",
    "Database",
    "DatabaseError",
    "ExternalError",
    "Image",
    "ImageStore",
    "InvalidInput",
    "InvalidName",
    "Minivirt",
    "MinivirtError",
    "NotFound",
    "Timeout",
    "default_root",
]
