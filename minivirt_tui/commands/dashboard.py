"""``miv tui``: the dashboard (Textual is imported only here)."""

from __future__ import annotations

import click


@click.command()
def tui() -> None:
    """Open the full-screen dashboard: images, VMs, remotes, builds and consoles."""
    from ..dashboard.app import run_dashboard

    run_dashboard()


COMMANDS = [tui]
