"""Every name a remote's layout uses, in one place (what ``layout.py`` is for the database).

Folder and S3 remotes (the original minivirt's layout)::

    <url>/tags/<tag>          the image id, as text
    <url>/images/<id>.tgz     the image folder as a gzip'd tar with flat members

OCI registries (KubeVirt containerDisks): the repository ``<namespace>/<name>``, tag
``<tag>`` (default ``latest``); one gzip layer holding ``disk/disk.qcow2`` owned by
107:107; minivirt's ``config.json`` and image id in the image config's labels.
"""

from __future__ import annotations

import re

TAGS = "tags"
IMAGES = "images"
IMAGE_SUFFIX = ".tgz"
IMAGE_KEY = re.compile(r"^images/[0-9a-f]{64}\.tgz$")


def tag_key(tag: str) -> str:
    """The path (relative to the remote) of the file that holds ``tag``'s image id."""
    return f"{TAGS}/{tag}"


def image_key(image_id: str) -> str:
    """The path (relative to the remote) of image ``image_id``'s archive."""
    return f"{IMAGES}/{image_id}{IMAGE_SUFFIX}"


# OCI ------------------------------------------------------------------------

OCI_DEFAULT_TAG = "latest"
OCI_DISK_DIR = "disk"  # KubeVirt boots the one file below it
OCI_DISK = "disk/disk.qcow2"
OCI_DISK_OWNER = 107  # uid and gid of qemu in KubeVirt's virt-launcher
LABEL_CONFIG = "org.minivirt.config"  # the image's config.json, byte for byte
LABEL_IMAGE_ID = "org.minivirt.image-id"
OCI_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}  # minivirt's architecture names -> OCI's
