"""The ``miv`` command: a thin click front end over :mod:`minivirt_core`.

Each command parses its arguments, calls one core operation and renders the result.
Errors of the core (:class:`~minivirt_core.errors.MinivirtError`) become a one-line
message and exit code 1 here, in one place; click's usage errors exit 2.
"""

from __future__ import annotations

import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import click

from .exitcodes import ExitCode

T = TypeVar("T")


# Where each subcommand lives; a module is imported only when its command runs (or for --help).
COMMAND_MODULES = {
    "images": "images", "tag": "images", "untag": "images", "prune": "images", "fsck": "images",
    "save": "images", "load": "images",
    "create": "vms", "start": "vms", "stop": "vms", "kill": "vms", "destroy": "vms", "ps": "vms",
    "console": "vms", "logs": "vms", "ssh": "vms", "run": "vms", "cp": "vms", "commit": "vms",
    "doctor": "system",
    "build": "build",
    "remote": "remotes", "pull": "remotes", "push": "remotes", "registry": "remotes",
    "export": "export",
    "tui": "dashboard",
    "port": "ports", "snapshot": "snapshots",
}


class MivGroup(click.Group):
    """The top-level group: loads commands lazily, maps core errors and Ctrl-C to exit codes."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMAND_MODULES) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            import importlib

            module = importlib.import_module(f"minivirt_tui.commands.{COMMAND_MODULES[cmd_name]}")
            for command in module.COMMANDS:
                self.commands.setdefault(command.name, command)
        return self.commands.get(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        from minivirt_core.errors import MinivirtError

        from .render import error

        try:
            return super().invoke(ctx)
        except MinivirtError as e:
            error(e.message)
            if e.hint:
                click.echo(e.hint, err=True)
            ctx.exit(ExitCode.FAILURE)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(ExitCode.INTERRUPTED)
        except Terminated as e:
            import signal

            click.echo(f"terminated by {signal.Signals(e.signum).name}", err=True)
            ctx.exit(128 + e.signum)


class Terminated(Exception):
    """``miv`` got SIGTERM or SIGHUP and stopped what it was doing, cleaning up as for Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a core coroutine to completion from a command.

    SIGTERM and SIGHUP (a closed terminal) cancel it as Ctrl-C does, so its cleanup runs
    (a throw-away VM is destroyed, a build's VM too); a second signal does not cut that
    cleanup short. They end in :class:`Terminated`."""
    import asyncio  # here, not at the top: `miv images` and `miv --help` need no event loop
    import signal

    received: list[int] = []

    async def main() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def on_signal(signum: int) -> None:
            if not received:
                received.append(signum)
                task.cancel()

        for signum in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, on_signal, signum)
        return await coro

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        if received:
            raise Terminated(received[0]) from None
        raise


def core(ensure: bool = True) -> Any:
    """The :class:`~minivirt_core.Minivirt` of this invocation; its database is created
    when missing (``ensure=False`` leaves that to the caller, e.g. ``doctor``)."""
    root = click.get_current_context().find_root()
    if root.obj is None:
        from minivirt_core import Minivirt

        root.obj = Minivirt()
    if ensure:
        root.obj.db.ensure()
    return root.obj


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=MivGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="minivirt", prog_name="miv")
def main() -> None:
    """minivirt: QEMU virtual machines with a Docker-like feel.

    The database is at $MINIVIRT_DB_PATH, else $XDG_STATE_HOME/minivirt, else
    ~/.local/state/minivirt.
    """


if __name__ == "__main__":
    sys.exit(main())
