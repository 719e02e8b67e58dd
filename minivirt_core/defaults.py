"""The defaults of new VMs and of waiting on them: one set for the ``miv`` command, the
dashboard and the Python API (nothing is imported here: ``miv images`` stays light)."""

from __future__ import annotations

MEMORY_MB = 1024  # a new VM's memory, MiB (`miv create`/`run`, the dashboard's Create and Run)
CPUS = 1  # a new VM's virtual CPUs
SSH_WAIT = 120.0  # seconds to wait for a guest's SSH server (`miv run`, `ssh`, `cp`)
STOP_TIMEOUT = 30.0  # seconds a guest has to power off before it is forced
