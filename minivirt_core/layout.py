"""Every on-disk name of the database, in one place.

The layout is compatible with databases written by the original minivirt::

    <root>/images/<id>/config.json, disk.qcow2   an image (id = 64 hex digits)
    <root>/images/<tag> -> <id>                  a tag (relative symlink)
    <root>/vms/<name>/...                        a VM (files below)
    <root>/remotes.json                          {name: url}
    <root>/cache/<sha256 of url>                 downloads of builds
    <root>/staging/<random>/                     images and VMs being written (ours)
    <root>/lock                                  the database lock (ours)
"""

from __future__ import annotations

# Top level.
IMAGES = "images"
VMS = "vms"
CACHE = "cache"
STAGING = "staging"
REMOTES = "remotes.json"
LOCK = "lock"

# Inside a staging folder: the id of an image it keeps from being pruned.
HOLD = "holds-image"

# Inside an image folder.
IMAGE_CONFIG = "config.json"
IMAGE_DISK = "disk.qcow2"

# Inside a VM folder: persistent files.
VM_CONFIG = "config.json"
VM_DISK = "disk.qcow2"
# Inside a VM folder: runtime files, present while QEMU runs (some kept after, as logs).
VM_PID = "qemu.pid"
VM_QMP = "qmp.sock"
VM_SERIAL = "serial.sock"
VM_SERIAL_LOG = "serial.log"
VM_QEMU_LOG = "qemu.log"
VM_RUN = "run.json"
VM_SSH_CONFIG = "ssh-config"
VM_SSH_KEY = "ssh-private-key"

VM_RUNTIME_FILES = (VM_PID, VM_QMP, VM_SERIAL, VM_RUN)
