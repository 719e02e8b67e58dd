"""``miv doctor``."""

from __future__ import annotations

import sys

import click

from ..cli import core, run
from ..exitcodes import ExitCode


@click.command()
def doctor() -> None:
    """Check what minivirt needs on this host, and say how to fix what is missing."""
    from minivirt_core.doctor import run_checks

    checks = run(run_checks(core(ensure=False).db))
    failed = False
    for check in checks:
        if check.ok:
            mark = click.style("ok  ", fg="green")
        elif check.required:
            mark = click.style("FAIL", fg="red", bold=True)
            failed = True
        else:
            mark = click.style("warn", fg="yellow")
        click.echo(f"{mark} {check.name}: {check.detail}")
        if check.fix and (not check.ok or check.name == "accelerator" or check.name.endswith(" guests")):
            click.echo(f"     {check.fix}")
    if failed:
        click.echo("Some requirements are missing: see above.", err=True)
        sys.exit(ExitCode.FAILURE)


COMMANDS = [doctor]
