#!/usr/bin/python3
"""minivirt (recipes/debian/build-debian.sh): cloud-init imported once, its stages forked from it.

bookworm's cloud-init runs its four boot stages as four Python processes, and each spends
seconds of an emulated CPU importing cloud-init before doing anything (~2.9 s idle, more during
the boot). This service listens on a socket at once (systemd starts the stages after that;
one that asks meanwhile waits), imports cloud-init, alongside the rest of the boot (on a boot
of an instance cloud-init already set up, with the CPU time the boot leaves idle), and serves
the stages: /usr/bin/cloud-init (ours) hands its arguments, environment and
standard streams over, and a fork of this process runs cloud-init's own main() with them, in
the stage unit's cgroup with its nice value and umask, and answers with the exit status.
Anything else, or no service, and /usr/bin/cloud-init runs cloud-init in its own process as
usual. The service ends after the last stage (modules --mode=final), or when idle for long.
(trixie's cloud-init 25.1 does the same itself: one process for all stages, cloud-init-main.service.)
"""
import array
import atexit
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import traceback
from collections.abc import Callable

SOCKET = "/run/minivirt/cloud-init.sock"
NETWORK_STAGE = ["init"]
LAST_STAGE = ["modules", "--mode=final"]
IDLE = 1800.0  # seconds without a request: cloud-init is not going to ask (disabled, rescue...)
KNOWN_INSTANCE = "/usr/local/lib/minivirt/known-instance"
# What the stages import besides cloud-init's main (~all of the time goes to that one).
EXTRA = ("cloudinit.sources.DataSourceNoCloud", "cloudinit.distros.debian",
         "cloudinit.distros.parsers.hostname", "email.generator")


def preload() -> Callable[[], int]:
    """Import cloud-init; return its main(). On a boot of an instance cloud-init already set
    up, its local stage is skipped and the first stage comes after the network is up, while
    the boot's way to SSH needs the CPUs: then the import only takes the time they leave idle,
    until a stage asks (the client puts this process back to its normal scheduling)."""
    try:
        known = subprocess.run([KNOWN_INSTANCE], timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        known = False
    if known:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    from cloudinit.cmd.main import main
    for name in EXTRA:
        try:
            __import__(name)
        except Exception:  # the stage imports it again, and says why, if it needs it
            pass
    use_libyaml()
    if known:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    return main


def use_libyaml() -> None:
    """cloud-init reads its configuration (cloud.cfg, cloud.cfg.d, the seed) three times per
    stage, with PyYAML's pure-Python parser: most of a stage's time before its first module
    (profiled in the guest). libyaml's parser (python3-yaml's C extension) gives the same
    documents ~13x faster; cloud-init's own loader is kept for anything else (the schema
    checker's line marks). The forks inherit it."""
    import yaml
    from cloudinit import safeyaml

    if not getattr(yaml, "__with_libyaml__", False):
        return

    class Loader(yaml.CSafeLoader):
        pass

    # What cloud-init's safe loader adds to PyYAML's (safeyaml._CustomSafeLoader).
    Loader.add_constructor("tag:yaml.org,2002:python/unicode", lambda loader, node: loader.construct_scalar(node))
    safeyaml.load = lambda blob: yaml.load(blob, Loader=Loader)
    print("cloud-init reads YAML with libyaml", file=sys.stderr)


def remember() -> None:
    """Ask once, for the stages forked from now on, what cloud-init asks in each stage and
    keeps for its process (functools.lru_cache), with the very calls its stages and modules
    make: the kernel command line (after systemd-detect-virt, for a container), the system's
    description, lsb_release (a Python program of its own; apt-configure asks) and dpkg's
    architecture. None of it changes during a boot. Done while the network stage runs, with
    the CPU time it leaves idle (at full priority, the questions slowed the local stage down,
    on the way to the network, more than they saved later); the next stage's client puts this
    process back to its normal scheduling if they are not answered by then."""
    from cloudinit import util

    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    try:
        for ask in (util.get_cmdline, util.system_info, lambda: util.lsb_release(target=None),
                    util.get_dpkg_architecture, lambda: util.get_dpkg_architecture(None)):
            try:
                ask()
            except Exception:  # a stage asks again, and says why
                pass
    finally:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def notify(state: str) -> None:
    """Tell systemd (Type=notify) how we are."""
    addr = os.environ.get("NOTIFY_SOCKET", "")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(addr)
        s.sendall(state.encode())


def join_client(pid: int) -> None:
    """Take on the client's cgroup (the stage's unit), nice value and umask."""
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                with open(f"/sys/fs/cgroup{line[3:].strip()}/cgroup.procs", "w") as procs:
                    procs.write(str(os.getpid()))
    os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, pid))
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                os.umask(int(line.split()[1], 8))


def run_stage(main: Callable[[], int], conn: socket.socket, request: dict, fds: list[int], pid: int) -> None:
    """In the fork: become the stage's process and run cloud-init's main(); never returns."""
    rc = 1
    try:
        join_client(pid)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = request["argv"]
        conn.sendall(b"R%d" % os.getpid())  # running: from here on the client must not run it itself
        try:
            rc = main()
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
        rc = rc if isinstance(rc, int) else 0 if rc is None else 1
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            conn.sendall(str(rc & 0xFF).encode())
        finally:
            os._exit(rc & 0xFF)


def take(listener: socket.socket, main: Callable[[], int]) -> "list[str] | None":
    """Serve one request: fork the stage it asks for. Its arguments (None: none was run)."""
    conn, _ = listener.accept()
    with conn:
        fds = array.array("i")
        try:
            pid, uid, _gid = struct.unpack("3i", conn.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
            msg, ancdata, _flags, _addr = conn.recvmsg(1 << 20, socket.CMSG_SPACE(3 * fds.itemsize))
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
            request = json.loads(msg)
            if not (uid == 0 and len(fds) == 3 and isinstance(request, dict)
                    and isinstance(request.get("argv"), list)):
                return None  # the client sees no "R" and runs the stage itself
            if os.fork() == 0:
                listener.close()
                run_stage(main, conn, request, list(fds), pid)
            print("stage", " ".join(map(str, request["argv"][1:])), "for pid", pid, file=sys.stderr)
            return [str(arg) for arg in request["argv"][1:]]
        except (OSError, ValueError) as e:
            print("a request failed:", e, file=sys.stderr)
            return None
        finally:
            for fd in fds:
                os.close(fd)


def serve() -> None:
    """Listen first (a stage that starts meanwhile waits in the queue), then import, then
    serve the stages until the last one."""
    os.makedirs(os.path.dirname(SOCKET), exist_ok=True)
    try:
        os.unlink(SOCKET)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    old = os.umask(0o077)
    listener.bind(SOCKET)  # root only
    os.umask(old)
    try:
        listener.listen(8)
        notify("READY=1\nSTATUS=importing cloud-init")
        main = preload()
        sys.stdout.flush()
        sys.stderr.flush()
        notify("STATUS=cloud-init imported; serving its stages")
        listener.settimeout(IDLE)
        stage = None
        while stage != LAST_STAGE:
            try:
                stage = take(listener, main)
            except TimeoutError:
                print("no stage asked for", IDLE, "s: exiting", file=sys.stderr)
                return
            if stage == NETWORK_STAGE:
                remember()
            while True:  # reap the stages that ended
                try:
                    if os.waitpid(-1, os.WNOHANG)[0] == 0:
                        break
                except ChildProcessError:
                    break
    finally:
        try:
            os.unlink(SOCKET)
        except FileNotFoundError:
            pass


if __name__ == "__main__":
    serve()
