"""``miv port add/rm/ls``: port forwards of a VM, changed while it runs."""

from __future__ import annotations

import json

import click

from ..cli import core, run
from ..render import info, table


@click.group()
def port() -> None:
    """Port forwards from 127.0.0.1 into a VM, applied at once and kept for its next start."""


@port.command("add")
@click.argument("name")
@click.argument("forward", metavar="HOST:GUEST")
def port_add(name: str, forward: str) -> None:
    """Forward 127.0.0.1:HOST to port GUEST of VM NAME."""
    from minivirt_core import portfwd

    vms = core().vms
    f = run(portfwd.add(vms, name, forward))
    when = "now and at every start" if vms.status(name).running else "from its next start"
    info(f"{name}: 127.0.0.1:{f.host_port} -> guest port {f.guest_port}, {when}")


@port.command("rm")
@click.argument("name")
@click.argument("host", metavar="HOST")
def port_rm(name: str, host: str) -> None:
    """Stop forwarding host port HOST into VM NAME."""
    from minivirt_core import portfwd

    f = run(portfwd.remove(core().vms, name, portfwd.parse_host_port(host)))
    info(f"{name}: no longer forwards 127.0.0.1:{f.host_port} (guest port {f.guest_port})")


@port.command("ls")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def port_ls(name: str, as_json: bool) -> None:
    """List VM NAME's forwards (ACTIVE: the running QEMU has it now)."""
    from minivirt_core import portfwd

    states = run(portfwd.list_forwards(core().vms, name))
    if as_json:
        click.echo(json.dumps([s.as_json() for s in states], indent=2))
    elif states:
        table(["HOST", "GUEST", "ACTIVE"], [
            [f"127.0.0.1:{s.forward.host_port}", str(s.forward.guest_port),
             "-" if s.active is None else ("yes" if s.active else "no")] for s in states])
    else:
        info(f"{name} forwards no ports; add one with `miv port add {name} HOST:GUEST`")


COMMANDS = [port]
