"""The ``miv`` command: a thin click front end over :mod:`minivirt_core`.

Each command parses its arguments, calls one core operation and renders the result.
Errors of the core (:class:`~minivirt_core.errors.MinivirtError`) become a one-line
message and exit code 1 here, in one place; click's usage errors exit 2. Both are shown
the same way: ``error: what is wrong`` and a line saying what to do.
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
    "doctor": "system", "completion": "system",
    "inspect": "inspect",
    "build": "build",
    "remote": "remotes", "pull": "remotes", "push": "remotes", "registry": "remotes",
    "export": "export",
    "tui": "dashboard",
    "port": "ports", "snapshot": "snapshots",
    "cache": "cache",
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

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as e:  # `miv --bogus`
            raise ShownError(e) from e

    def invoke(self, ctx: click.Context) -> Any:
        from minivirt_core.errors import MinivirtError

        from .render import error

        try:
            return super().invoke(ctx)
        except MinivirtError as e:
            error(e.message, e.hint)
            ctx.exit(ExitCode.FAILURE)
        except ShownError:
            raise
        except click.ClickException as e:  # a subcommand's usage error, a missing file argument
            raise ShownError(e) from e
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(ExitCode.INTERRUPTED)
        except Terminated as e:
            import signal

            click.echo(f"terminated by {signal.Signals(e.signum).name}", err=True)
            ctx.exit(128 + e.signum)


class ShownError(click.ClickException):
    """A click error (bad usage, an unreadable file argument) shown as every ``miv`` error
    is: ``error: …`` and a hint (the usage line and where help is), with click's exit code."""

    def __init__(self, cause: click.ClickException) -> None:
        message = cause.format_message().rstrip(".")
        if message[:1].isupper() and not message[1:2].isupper():
            message = message[0].lower() + message[1:]  # "Missing argument" -> "missing argument"
        super().__init__(message)
        self.exit_code = cause.exit_code  # type: ignore[misc]  # click declares it on the class
        self.hint: str | None = None
        ctx = getattr(cause, "ctx", None)
        if isinstance(cause, click.UsageError) and ctx is not None:
            path = ctx.command_path
            if isinstance(ctx.command, click.Group) and "command" in message:
                self.hint = f"`{path} --help` lists the commands."
            else:
                pieces = " ".join(ctx.command.collect_usage_pieces(ctx))
                self.hint = f"Usage: {path} {pieces}; `{path} --help` tells more."

    def show(self, file: Any = None) -> None:
        from .render import error

        error(self.message, self.hint)


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
