#!/usr/bin/python3
# minivirt (recipes/debian/build-debian.sh): cloud-init's console script. A boot stage is run by
# the fork of minivirt-cloud-init-preload.service's process (cloud-init imported once per boot)
# when that service is there; anything else runs here, calling cloud-init's main directly
# (without the importlib.metadata look-up of Debian's script, /usr/bin/cloud-init.distrib).
import os
import signal
import socket
import struct
import sys

STAGES = (["init", "--local"], ["init"], ["modules", "--mode=config"], ["modules", "--mode=final"])


def preloaded() -> "int | None":
    """The stage's exit status, run by the preloaded cloud-init; None: run it here."""
    if sys.argv[1:] not in STAGES:
        return None
    import array
    import json
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        try:
            s.connect("/run/minivirt/cloud-init.sock")
            # It may still be importing, with only the CPU time the boot leaves idle (a boot
            # of a known instance, before any stage needs it): a stage needs it now.
            pid, _uid, _gid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                               struct.calcsize("3i")))
            try:
                os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))
            except OSError:
                pass
            request = json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "env": dict(os.environ)})
            s.sendmsg([request.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0, 1, 2]))])
            started = s.recv(16)
            if started[:1] != b"R":
                return None  # it did not start the stage: nothing ran
        except OSError:
            return None
        # The stage is cloud-init's process now: what systemd sends this one goes to it.
        stage = int(started[1:])
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda signum, _frame: os.kill(stage, signum))
        answer = s.recv(8)
    if not answer:
        print("cloud-init: the preloaded cloud-init ended without an exit status", file=sys.stderr)
        return 1
    return int(answer)


rc = preloaded()
if rc is None:
    from cloudinit.cmd.main import main
    rc = main()
sys.exit(rc)
