"""The hand-over to KubeVirt: a ``VirtualMachine`` manifest for a minivirt VM or image.

The VM boots the containerDisk that ``miv push`` wrote to a registry, with the VM's memory
and CPUs, a cloud-init NoCloud volume when there is user-data, and the port forwards as
the ``Service`` a user would add (a second YAML document). What it writes is checked
against KubeVirt's own schema in the tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import InvalidInput
from .remotes.layout import OCI_ARCH

if TYPE_CHECKING:
    from .api import Minivirt

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
IMAGE_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]*")
USER_DATA_LIMIT = 64 << 10


@dataclass(frozen=True)
class Machine:
    """What KubeVirt needs to know of a VM."""

    name: str
    memory_mb: int
    cpus: int
    arch: str
    guest_ports: tuple[int, ...] = ()
    user_data: str | None = None


def resource_name(text: str) -> str:
    """``text`` as a Kubernetes resource name (a DNS label): lowercase, ``-`` for the rest."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].strip("-")
    if not DNS_LABEL.fullmatch(name):
        raise InvalidInput(f"{text[:40]!r} does not make a Kubernetes name", hint="Give one with --name.")
    return name


def virtual_machine(machine: Machine, image: str) -> dict[str, Any]:
    """The ``kubevirt.io/v1`` ``VirtualMachine`` that runs ``machine`` from the containerDisk ``image``."""
    if not IMAGE_REF.fullmatch(image):
        raise InvalidInput(f"{image[:60]!r} is not a registry image reference", hint="e.g. ghcr.io/me/tiny:v1")
    memory = f"{machine.memory_mb}Mi"
    disks: list[dict[str, Any]] = [{"name": "containerdisk", "disk": {"bus": "virtio"}}]
    volumes: list[dict[str, Any]] = [{"name": "containerdisk", "containerDisk": {"image": image}}]
    if machine.user_data is not None:
        disks.append({"name": "cloudinitdisk", "disk": {"bus": "virtio"}})
        volumes.append({"name": "cloudinitdisk", "cloudInitNoCloud": {"userData": machine.user_data}})
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": machine.name, "labels": {"app.kubernetes.io/managed-by": "minivirt"}},
        "spec": {
            "runStrategy": "Always",
            "template": {
                "metadata": {"labels": {"kubevirt.io/vm": machine.name}},
                "spec": {
                    "architecture": OCI_ARCH.get(machine.arch, machine.arch),
                    "domain": {
                        "cpu": {"cores": machine.cpus},
                        "memory": {"guest": memory},
                        "resources": {"requests": {"memory": memory}},
                        "devices": {"disks": disks, "interfaces": [{"name": "default", "masquerade": {}}]},
                    },
                    "networks": [{"name": "default", "pod": {}}],
                    "volumes": volumes,
                },
            },
        },
    }


def service(machine: Machine) -> dict[str, Any] | None:
    """The ``Service`` that exposes the VM's forwarded guest ports in the cluster (None: no ports)."""
    if not machine.guest_ports:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": machine.name},
        "spec": {
            "selector": {"kubevirt.io/vm": machine.name},
            "ports": [{"name": f"port-{p}", "port": p, "targetPort": p, "protocol": "TCP"}
                      for p in machine.guest_ports],
        },
    }


def manifests(machine: Machine, image: str) -> list[dict[str, Any]]:
    """The documents to apply: the VirtualMachine, and the Service when there are ports."""
    docs = [virtual_machine(machine, image)]
    if svc := service(machine):
        docs.append(svc)
    return docs


def to_yaml(docs: list[dict[str, Any]], note: str) -> str:
    """The documents as one YAML stream, ``note`` as a comment on top."""
    import yaml

    head = "".join(f"# {line}\n" for line in note.splitlines())
    return head + "---\n".join(yaml.safe_dump(d, sort_keys=False, default_flow_style=False) for d in docs)


def machine_of(miv: Minivirt, ref: str, name: str | None, user_data: str | None) -> Machine:
    """The VM ``ref`` (its memory, CPUs, ports and cloud-init user-data), else the image
    ``ref`` (defaults of ``miv create``)."""
    from .vmconfig import DEFAULT_CPUS, DEFAULT_MEMORY_MB

    if user_data is not None and len(user_data.encode()) > USER_DATA_LIMIT:
        raise InvalidInput(f"the user-data is larger than {USER_DATA_LIMIT // 1024} KiB")
    if ref in miv.vms.names():
        config, problems = miv.vms.check(ref)
        if config is None:
            raise InvalidInput(f"VM {ref}: {'; '.join(problems)}")
        arch = miv.images.get(config.image).arch if config.image else "x86_64"
        vm_user_data = getattr(config, "cloud_init_user_data", None)  # per-VM cloud-init, where VMs record it
        return Machine(resource_name(name or ref), config.memory_mb, config.cpus, arch,
                       tuple(sorted({p.guest_port for p in config.ports})),
                       user_data if user_data is not None else vm_user_data)
    image = miv.images.resolve(ref)
    return Machine(resource_name(name or ref), DEFAULT_MEMORY_MB, DEFAULT_CPUS, image.arch, (), user_data)
