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


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the script that completes miv's commands, VM names, image references, remotes
    and recipe files in SHELL. Enable it in bash with (zsh, fish: likewise):

        echo 'eval "$(miv completion bash)"' >> ~/.bashrc
    """
    from ..completion import script

    click.echo(script(shell))


COMMANDS = [doctor, completion]
