"""VM commands: create, start, stop, kill, destroy, ps, console, logs, ssh, run, cp, commit."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from minivirt_core import defaults

from ..cli import core, run
from ..completion import copy_paths, image_refs, vm_names
from ..render import duration, info, table

if TYPE_CHECKING:
    from minivirt_core.seed import CloudInit

DEFAULT_SSH_WAIT = defaults.SSH_WAIT


def _resources(f: click.decorators.FC) -> click.decorators.FC:
    f = click.option("--isolated", is_flag=True,
                     help="No network for the guest: it cannot reach this machine (10.0.2.2) or beyond; "
                          "forwards into it still work. For images you do not trust.")(f)
    f = click.option("--port", "ports", multiple=True, metavar="HOST:GUEST",
                     help="Forward 127.0.0.1:HOST to the guest's port GUEST (repeatable).")(f)
    f = click.option("--cpus", type=click.IntRange(1, 64), default=defaults.CPUS, show_default=True,
                     help="Virtual CPUs.")(f)
    f = click.option("-m", "--memory", default=str(defaults.MEMORY_MB), show_default=True,
                     help="Memory: MiB, or e.g. 512M, 2G.")(f)
    return f


def _cold(f: click.decorators.FC) -> click.decorators.FC:
    return click.option("--cold", is_flag=True,
                        help="Boot, even if a warm state of the image could resume it (see `miv images`).")(f)


def _cloud_init(f: click.decorators.FC) -> click.decorators.FC:
    f = click.option("--ssh-key", "ssh_keys", multiple=True, metavar="PUBKEY",
                     help="Let this public key (or .pub file) log in as root, through cloud-init (repeatable).")(f)
    f = click.option("--cloud-init", "user_data", type=click.Path(dir_okay=False, path_type=Path),
                     metavar="USER-DATA", help="A #cloud-config file for the VM's cloud-init (NoCloud seed).")(f)
    return f


def _seed(user_data: Path | None, ssh_keys: tuple[str, ...]) -> CloudInit | None:
    """The VM's cloud-init seed settings, when --cloud-init or --ssh-key was given."""
    if user_data is None and not ssh_keys:
        return None
    from minivirt_core.seed import CloudInit

    return CloudInit.from_files(user_data, ssh_keys)


@click.command()
@click.argument("image", shell_complete=image_refs)
@click.argument("name")
@_resources
@_cloud_init
@click.option("--disk", "disk_size", metavar="SIZE", help="Grow the VM's disk to SIZE (e.g. 10G).")
def create(image: str, name: str, memory: str, cpus: int, ports: tuple[str, ...], disk_size: str | None,
           isolated: bool, user_data: Path | None, ssh_keys: tuple[str, ...]) -> None:
    """Create VM NAME from IMAGE (a copy-on-write disk over the image). With --cloud-init or
    --ssh-key the VM gets its own cloud-init seed: hostname NAME, the user data, the keys."""
    st = run(core().vms.create(image, name, memory=memory, cpus=cpus, disk_size=disk_size, ports=ports,
                               isolated=isolated, cloud_init=_seed(user_data, ssh_keys)))
    info(f"created VM {st.name} from {st.image_label}; start it with `miv start {st.name}`")


@click.command()
@click.argument("name", shell_complete=vm_names)
@click.option("-d", "--daemon", is_flag=True, help="Do not attach the terminal to the serial console.")
@click.option("--snapshot", is_flag=True, help="Discard the disk writes of this run when QEMU exits.")
@click.option("--wait-for-ssh", type=float, metavar="SECONDS", help="Wait until SSH answers (at most SECONDS).")
@_cold
def start(name: str, daemon: bool, snapshot: bool, wait_for_ssh: float | None, cold: bool) -> None:
    """Boot VM NAME. Without --daemon a terminal attaches to its serial console (Ctrl-]
    detaches); when stdin or stdout is not a terminal, it starts detached."""

    async def go() -> None:
        vms = core().vms
        st = await vms.start(name, snapshot=snapshot, wait_for_ssh=wait_for_ssh, cold=cold,
                             note=lambda notice: info(notice.text))
        if wait_for_ssh:  # first contact now: the guest stops accepting the well-known key
            (await vms.ssh_connect(name, wait_for_ssh)).close()
        info(f"started {name} (ssh port {st.ssh_port}, {st.accel})")
        if daemon:
            return
        if not (sys.stdin.isatty() and sys.stdout.isatty()):  # a script's `miv start`: no terminal to attach
            info(f"not attached to its console, as this is not a terminal: `miv console {name}` "
                 f"attaches from one, `miv logs {name}` prints what it said")
            return
        from ..terminal import attach_console

        await attach_console(st.path, show_log=False)

    run(go())


@click.command()
@click.argument("names", nargs=-1, required=True, shell_complete=vm_names)
@click.option("-t", "--timeout", type=float, default=defaults.STOP_TIMEOUT, show_default=True,
              help="Seconds to wait for the guest to power off before forcing it.")
def stop(names: tuple[str, ...], timeout: float) -> None:
    """Power off VMs gracefully (ACPI), forcing them after --timeout."""
    from minivirt_core.rows import stop_message

    vms = core().vms
    for name in names:
        info(stop_message(name, run(vms.stop(name, timeout=timeout))))
        if vms.ssh_key_replaced(name):
            info(f"note: {name} still accepts only its own SSH key (putting the well-known key back failed); "
                 "`miv commit` will boot it briefly to do so")


@click.command()
@click.argument("names", nargs=-1, required=True, shell_complete=vm_names)
def kill(names: tuple[str, ...]) -> None:
    """Stop VMs at once, without asking the guest."""
    from minivirt_core.rows import kill_message

    for name in names:
        info(kill_message(name, run(core().vms.kill(name))))


@click.command()
@click.argument("names", nargs=-1, required=True, shell_complete=vm_names)
def destroy(names: tuple[str, ...]) -> None:
    """Remove VMs (killing them if they run). Their images stay."""
    for name in names:
        run(core().vms.destroy(name))
        info(f"destroyed {name}")


@click.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Include stopped VMs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def ps(all_: bool, as_json: bool) -> None:
    """List running VMs (-a: all VMs)."""
    from minivirt_core.rows import VM_COLUMNS, vm_row

    found = core().vms.list(include_stopped=all_)
    if as_json:
        click.echo(json.dumps([v.as_json() for v in found], indent=2))
        return
    table(VM_COLUMNS, [vm_row(v) for v in found])


@click.command()
@click.argument("name", shell_complete=vm_names)
def console(name: str) -> None:
    """Attach to the serial console of running VM NAME (shows recent output first)."""
    from minivirt_core.errors import Conflict

    from ..terminal import ESCAPE_NAME, attach_console

    st = core().vms.status(name)
    if not st.running:
        raise Conflict(f"VM {name!r} is not running",
                       hint=f"Start it with `miv start {name}` (which attaches to its console); "
                            f"`miv logs {name}` shows what it printed.")
    info(f"{ESCAPE_NAME} detaches")
    run(attach_console(st.path))


@click.command()
@click.argument("name", shell_complete=vm_names)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output (Ctrl-C stops).")
@click.option("-n", "--tail", type=click.IntRange(0), metavar="N", help="Only the last N lines.")
@click.option("--since", metavar="TIME",
              help="Only what the boot running at TIME printed, and later boots (10m, 2h, 3d, or "
                   "2026-11-27T02:00): the log records when each boot began, not each line.")
def logs(name: str, follow: bool, tail: int | None, since: str | None) -> None:
    """Print VM NAME's serial console log (without the guest's terminal queries)."""
    from minivirt_core import serial_log
    from minivirt_core.console import QueryFilter

    st = core().vms.status(name)
    when = serial_log.parse_since(since) if since is not None else None
    out = sys.stdout.buffer
    safe = QueryFilter()  # a query's answer would be typed into the user's shell
    offset = serial_log.start_offset(st.path, tail=tail, since=when)
    for chunk in serial_log.read_chunks(st.path, offset):
        out.write(safe.feed(chunk))
        offset += len(chunk)
    out.flush()
    if not follow:
        return

    async def go() -> None:
        from minivirt_core.console import follow_log

        async for data in follow_log(st.path, offset=offset):
            out.write(safe.feed(data))
            out.flush()

    run(go())


class _CommandLineCommand(click.Command):
    """`miv ssh NAME [OPTIONS] COMMAND...` / `miv run IMAGE [OPTIONS] COMMAND...`: options may
    come before or after NAME, as with ssh(1), and COMMAND starts at the next word that is not
    one of ours: from there every word is the command's, even one that looks like our option
    (`miv run tiny grep -m 1 x f` keeps its `-m 1`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value: dict[str, bool] = {}
        for param in self.get_params(ctx):
            if isinstance(param, click.Option):
                for opt in (*param.opts, *param.secondary_opts):
                    takes_value[opt] = not param.is_flag and not param.count
        args = list(args)
        i, words = 0, 0
        while i < len(args) and args[i] != "--":
            arg = args[i]
            if arg.startswith("-") and arg != "-":
                name = arg.split("=", 1)[0]
                attached = "=" in arg
                if name not in takes_value and not arg.startswith("--") and arg[:2] in takes_value:
                    name, attached = arg[:2], True  # -m512
                if name in takes_value or words == 0:
                    i += 2 if takes_value.get(name) and not attached else 1
                    continue
            words += 1
            if words == 2:  # the command's first word: the rest is its own
                args.insert(i, "--")
                break
            i += 1
        return super().parse_args(ctx, args)


async def _ssh_session(vm: str, wait: float, command: str | None, force_tty: bool,
                       on_connected: Callable[[], None] | None = None) -> int:
    stdin = _stdin_fd()  # streamed to the command when it is not a terminal, as ssh(1) does
    interactive = stdin is None and (force_tty or command is None)  # -t needs a terminal to bridge
    if not interactive:
        return await core().vms.ssh.run(vm, command or "sh", _out, _err, stdin=stdin, wait=wait,
                                        on_connected=on_connected)
    async with core().vms.ssh.command_session(vm, wait) as (conn, _):
        if on_connected is not None:
            on_connected()
        from ..terminal import interactive_ssh

        return await interactive_ssh(conn, command)


def _stdin_fd() -> int | None:
    """Standard input's descriptor when it is not a terminal (closed stdin: /dev/null's)."""
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):
        return os.open(os.devnull, os.O_RDONLY)
    return None if os.isatty(fd) else fd


def _out(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _err(data: bytes) -> None:
    sys.stderr.buffer.write(data)
    sys.stderr.buffer.flush()


@click.command(cls=_CommandLineCommand)
@click.argument("name", shell_complete=vm_names)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("-t", "--tty", "force_tty", is_flag=True, help="A terminal even with a command (when stdin is one).")
@click.option("--wait", type=float, default=DEFAULT_SSH_WAIT, show_default=True,
              help="Seconds to wait for the guest's SSH server.")
def ssh(name: str, command: tuple[str, ...], force_tty: bool, wait: float) -> None:
    """Open a shell on VM NAME over SSH, or run COMMAND there (its exit status is miv's).

    One argument is a shell line, as with ssh: miv ssh web 'cd /srv && make'. Several are a command
    and its arguments, kept as given, as with docker run: miv ssh web sh -c 'exit 3'."""

    async def go() -> int:
        from minivirt_core.ssh import shell_command

        return await _ssh_session(name, wait, shell_command(command), force_tty)

    sys.exit(run(go()))


@click.command(name="run", cls=_CommandLineCommand)
@click.argument("image", shell_complete=image_refs)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@_resources
@click.option("--wait-for-ssh", type=float, default=DEFAULT_SSH_WAIT, show_default=True, metavar="SECONDS",
              help="Seconds to wait for the guest's SSH server.")
@click.option("-t", "--tty", "force_tty", is_flag=True, help="A terminal even with a command (when stdin is one).")
@_cold
@_cloud_init
def run_(image: str, command: tuple[str, ...], memory: str, cpus: int, ports: tuple[str, ...],
         isolated: bool, wait_for_ssh: float, force_tty: bool, cold: bool, user_data: Path | None,
         ssh_keys: tuple[str, ...]) -> None:
    """Boot a throw-away VM of IMAGE, open a shell (or run COMMAND), then destroy it.

    One argument is a shell line, as with ssh: miv run tiny 'uname -a; hostname'. Several are a command
    and its arguments, kept as given, as with docker run: miv run tiny sh -c 'exit 3'."""
    import asyncio

    from minivirt_core.ephemeral import ephemeral_vm
    from minivirt_core.ssh import shell_command
    from minivirt_core.warm import NEWS, Notice

    from ..render import StatusLine

    seed = _seed(user_data, ssh_keys)

    async def go() -> int:
        status = StatusLine()  # on a terminal only: while it boots, until the command's output starts
        ticker = asyncio.ensure_future(status.ticking()) if status.enabled else None

        def note(notice: Notice) -> None:  # what a warm start says: saved one (news), or fell back to a cold boot
            if status.enabled or notice.level != NEWS:  # piped, the news would be noise in a script's stderr
                status.clear()
                info(notice.text)

        try:
            status.set(f"booting a VM of {image}, waiting for SSH")
            async with ephemeral_vm(core().vms, image, memory=memory, cpus=cpus, ports=ports,
                                    wait_for_ssh=wait_for_ssh, isolated=isolated, cold=cold, note=note,
                                    cloud_init=seed) as st:
                status.set(f"{st.name} ({image}): logging in")
                return await _ssh_session(st.name, wait_for_ssh, shell_command(command), force_tty,
                                          on_connected=status.clear)
        finally:
            if ticker is not None:
                ticker.cancel()
            status.clear()

    sys.exit(run(go()))


@click.command()
@click.argument("src", shell_complete=copy_paths)
@click.argument("dest", shell_complete=copy_paths)
def cp(src: str, dest: str) -> None:
    """Copy files between the host and a VM: `miv cp file vm:/path` or `miv cp vm:/path file`.

    What comes out of a VM never keeps setuid, setgid or sticky bits, nor write access for others."""
    vms = core().vms

    def split(arg: str) -> tuple[str | None, str]:
        name, sep, path = arg.partition(":")
        if sep and name and "/" not in name and os.path.isdir(vms.path(name)):
            return name, path or "."
        return None, arg

    (src_vm, src_path), (dest_vm, dest_path) = split(src), split(dest)
    if (src_vm is None) == (dest_vm is None):
        raise click.UsageError("name a VM on exactly one side, as NAME:PATH")
    vm = src_vm or dest_vm
    assert vm is not None

    async def go() -> None:
        from minivirt_core import ssh

        conn = await vms.ssh_connect(vm, DEFAULT_SSH_WAIT)
        try:
            result = await ssh.copy(conn, src_path, dest_path, upload=dest_vm is not None, guest=f"VM {vm}")
        finally:
            conn.close()
        for skipped in result.skipped:
            info(f"skipped {skipped}")

    run(go())


@click.command()
@click.argument("name", shell_complete=vm_names)
@click.argument("tags", nargs=-1, required=True)
def commit(name: str, tags: tuple[str, ...]) -> None:
    """Save stopped VM NAME's disk as a new image tagged TAGS."""
    started = time.monotonic()
    vms = core().vms
    if vms.ssh_key_replaced(name) and not vms.status(name).running:
        info(f"{name} was stopped without putting back the well-known SSH key (killed, or powered off from "
             "inside): booting it briefly to do so, so that the image opens with it")
    from minivirt_core.rows import tag_moves

    image = run(vms.commit(name, tags))
    info(f"committed {name} as {image.short_id} (tagged {', '.join(tags)}) in "
         f"{duration(time.monotonic() - started)}")
    for line in tag_moves(image.moved):
        info(line)
    click.echo(image.short_id)


COMMANDS = [create, start, stop, kill, destroy, ps, console, logs, ssh, run_, cp, commit]
