"""A VM's own cloud-init seed (NoCloud), as Multipass ``launch --cloud-init`` offers.

``miv create IMAGE NAME --cloud-init USER-DATA --ssh-key PUBKEY`` writes, in the VM's
folder, a ``cidata`` ISO (:data:`~minivirt_core.layout.VM_SEED`) attached as a CD-ROM:

- ``meta-data``: ``instance-id`` and ``local-hostname`` from the VM's name, so cloud-init
  sees a new instance (its per-instance modules run once in this VM) named like the VM;
- ``user-data``: a ``#cloud-config`` with minivirt's part — the hostname, root allowed
  to log in with keys (``disable_root: false``), the VM's own minivirt key and the
  ``--ssh-key`` keys in root's ``authorized_keys`` — merged into the user's cloud-config
  (their ``users`` kept, root's entry gets the keys added; their other settings as given).

With its own key in the seed, the VM accepts minivirt's key from its first boot; the
first SSH contact still takes the well-known key out of the guest (see vmkey.py).
Images without cloud-init ignore the CD-ROM. User data is untrusted input: read bounded,
parsed as YAML into a mapping here, and refused with a clear error otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InvalidInput, NotFound

MAX_USER_DATA = 1 << 20  # bytes: cloud-init's own limit for user data is of this order
CLOUD_CONFIG_HEADER = "#cloud-config"
_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-")


@dataclass(frozen=True)
class CloudInit:
    """What the user asked cloud-init to do in a VM: their cloud-config (a mapping, maybe
    empty) and public keys for root."""

    user_config: dict[str, Any] = field(default_factory=dict)
    ssh_keys: tuple[str, ...] = ()

    @classmethod
    def from_files(cls, user_data: Path | None, ssh_keys: Iterable[str]) -> CloudInit:
        """Read and check ``user_data`` (a ``#cloud-config`` file) and the keys (each a
        public key line, or a file holding one or more)."""
        config = parse_user_data(_read_bounded(user_data), str(user_data)) if user_data else {}
        keys: list[str] = []
        for key in ssh_keys:
            keys += public_keys(key)
        return cls(config, tuple(keys))


def _read_bounded(path: Path) -> str:
    from .fsutil import open_regular

    try:
        f = open_regular(path)
    except FileNotFoundError as e:
        raise NotFound(f"{path}: no such file") from e
    with f:
        data = f.read(MAX_USER_DATA + 1)
    if len(data) > MAX_USER_DATA:
        raise InvalidInput(f"{path} is larger than {MAX_USER_DATA >> 10} KiB: not user data")
    try:
        return data.decode()
    except UnicodeDecodeError as e:
        raise InvalidInput(f"{path} is not UTF-8 text: not a #cloud-config file") from e


def parse_user_data(text: str, source: str) -> dict[str, Any]:
    """The user's ``#cloud-config`` as a mapping; anything else is an :class:`InvalidInput`."""
    import yaml

    if not text.startswith(CLOUD_CONFIG_HEADER):
        raise InvalidInput(f"{source} does not start with {CLOUD_CONFIG_HEADER!r}",
                           hint="--cloud-init takes a cloud-config file; run scripts from its runcmd.")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise InvalidInput(f"{source} is not valid YAML{line}: {getattr(e, 'problem', None) or e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise InvalidInput(f"{source} is not a cloud-config mapping (keys: values)")
    users = data.get("users")
    if users is not None and not isinstance(users, list):
        raise InvalidInput(f"{source}: 'users' must be a list")
    return data


def public_keys(text_or_file: str) -> list[str]:
    """The public key lines of ``--ssh-key``: the key itself, or a file of them (``.pub``)."""
    text = text_or_file.strip()
    source = "--ssh-key"
    if not text.startswith(_KEY_TYPES):
        path = Path(text_or_file).expanduser()
        source = str(path)
        text = _read_bounded(path)
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise InvalidInput(f"{source} holds no public key")
    for line in lines:
        check_public_key(line, source)
    return lines


def check_public_key(line: str, source: str) -> None:
    """Refuse anything but one OpenSSH public key line (no newlines, no options)."""
    import asyncssh

    if not line.startswith(_KEY_TYPES) or "\n" in line or "\r" in line:
        raise InvalidInput(f"{source}: {line[:40]!r} is not an OpenSSH public key line",
                           hint="Give the key (ssh-ed25519 AAAA... comment) or its .pub file.")
    try:
        asyncssh.import_public_key(line)
    except (asyncssh.KeyImportError, ValueError) as e:
        raise InvalidInput(f"{source}: not a valid public key ({e})") from e


def hostname_of(vm_name: str) -> str:
    """A host name (RFC 1123 label) for VM ``vm_name``: ``_`` and ``.`` become ``-``."""
    return re.sub(r"[^A-Za-z0-9-]", "-", vm_name)[:63].strip("-") or "vm"


def documents(vm_name: str, own_key_line: str, cloud_init: CloudInit) -> tuple[str, str]:
    """The ``user-data`` (``#cloud-config`` text) and ``meta-data`` of VM ``vm_name``'s seed."""
    import yaml

    config = dict(cloud_init.user_config)
    keys = [own_key_line, *cloud_init.ssh_keys]
    if "hostname" not in config and "fqdn" not in config:
        config["hostname"] = hostname_of(vm_name)
    config["disable_root"] = False  # minivirt logs in as root
    users = list(config.get("users") or ["default"])
    for i, user in enumerate(users):
        if isinstance(user, dict) and user.get("name") == "root":
            given = user.get("ssh_authorized_keys") or []
            users[i] = {**user, "ssh_authorized_keys": [*(given if isinstance(given, list) else [given]), *keys]}
            break
    else:
        users.append({"name": "root", "ssh_authorized_keys": keys})
    config["users"] = users
    user_data = CLOUD_CONFIG_HEADER + "\n" + yaml.safe_dump(config, sort_keys=False, width=1 << 16)
    meta_data = yaml.safe_dump({"instance-id": f"minivirt-{vm_name}", "local-hostname": hostname_of(vm_name)},
                               sort_keys=False)
    return user_data, meta_data


def write_seed(vm_dir: Path, vm_name: str, cloud_init: CloudInit) -> str:
    """Write VM ``vm_name``'s seed ISO in ``vm_dir`` (making the VM's own key if needed);
    returns its file name, to attach as a CD-ROM."""
    from . import layout, vmkey
    from .cidata import write_iso

    own = vmkey.public_line(vmkey.own_key(vm_dir))
    user_data, meta_data = documents(vm_name, own, cloud_init)
    write_iso(vm_dir / layout.VM_SEED, user_data, meta_data)
    return layout.VM_SEED
