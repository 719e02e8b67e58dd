"""``miv export kubevirt``: hand a VM over to KubeVirt."""

from __future__ import annotations

from pathlib import Path

import click

from ..cli import core


@click.group()
def export() -> None:
    """Describe a VM for another engine."""


@export.command("kubevirt")
@click.argument("ref", metavar="VM|IMAGE")
@click.option("--image", "image", required=True, metavar="REGISTRY/REPO:TAG",
              help="The containerDisk the VM boots (what `miv push` wrote to a registry).")
@click.option("--name", help="The VirtualMachine's name (default: the VM's or image's).")
@click.option("--user-data", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A cloud-init user-data file for a NoCloud volume (default: the VM's own, if it has one).")
def export_kubevirt(ref: str, image: str, name: str | None, user_data: Path | None) -> None:
    """Print a KubeVirt VirtualMachine (YAML) for VM or IMAGE: its memory and CPUs, the
    containerDisk IMAGE, cloud-init, and its port forwards as a Service.

    \b
    miv push ghcr tiny tiny:v1
    miv export kubevirt myvm --image ghcr.io/me/tiny:v1 | kubectl apply -f -
    """
    from minivirt_core import kubevirt

    text = user_data.read_text() if user_data else None
    machine = kubevirt.machine_of(core(), ref, name, text)
    note = f"KubeVirt VirtualMachine for minivirt {ref!s}, booting {image}; apply with kubectl apply -f"
    click.echo(kubevirt.to_yaml(kubevirt.manifests(machine, image), note), nl=False)


COMMANDS = [export]
