"""Every on-disk name of the database, in one place.

The layout is compatible with databases written by the original minivirt::

    <root>/images/<id>/config.json, disk.qcow2   an image (id = 64 hex digits)
    <root>/images/<tag> -> <id>                  a tag (relative symlink)
    <root>/vms/<name>/...                        a VM (files below)
    <root>/remotes.json                          {name: url}
    <root>/registry-auth.json                    registry credentials (0600)
    <root>/cache/<sha256 of url>                 downloads of builds
    <root>/cache/oci-layer-<id>.json             the layer an OCI push made of image <id>
    <root>/staging/<random>/                     images and VMs being written (ours)
    <root>/lock                                  the database lock (ours)
"""

from __future__ import annotations

import re

# Top level.
IMAGES = "images"
VMS = "vms"
CACHE = "cache"
STAGING = "staging"
REMOTES = "remotes.json"
REGISTRY_AUTH = "registry-auth.json"  # `miv registry login` credentials (0600)
LOCK = "lock"

# Inside cache/: what an OCI push learnt of an image's layer (digest, size, diff_id), so a
# second push of the image asks the registry about the blob instead of compressing again.
OCI_LAYER_RECORD = re.compile(r"oci-layer-([0-9a-f]{64})\.json")


def oci_layer_record(image_id: str) -> str:
    """The name (in ``cache/``) of image ``image_id``'s OCI layer record."""
    return f"oci-layer-{image_id}.json"


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
VM_SERIAL_BOOTS = "serial-boots"  # "<unix time> <serial.log offset> start|stop" lines (serial_log.py)
VM_RUN = "run.json"
VM_QMP_LOCK = "qmp.lock"  # flock'ed by whoever talks to QEMU over QMP (one client at a time)
VM_SSH_CONFIG = "ssh-config"  # for plain `ssh -F`: names the key the guest accepts now
# Inside a VM folder: its SSH keys (see vmkey.py).
VM_SSH_KEY = "ssh-key"  # the VM's own private key (ed25519, 0600), made on first SSH contact
VM_SSH_KEY_STATE = "ssh-key.json"  # which key the VM's disk accepts: {"disk_key": "own"|"well-known", ...}
VM_SSH_KEY_LOCK = "ssh-key.lock"  # flock'ed while a process replaces the well-known key
VM_WELL_KNOWN_KEY = "ssh-private-key"  # a 0600 copy of the well-known key, for VMs that keep it
VM_SEED = "cloud-init-seed.iso"  # the VM's own NoCloud seed (see seed.py), attached as a CD-ROM

VM_RUNTIME_FILES = (VM_PID, VM_QMP, VM_SERIAL, VM_RUN)
