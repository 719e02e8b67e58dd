"""A small, fixed database for the dashboard's snapshot tests: same ids, names, times.

It is built in the test's own folder, which the tests make the home folder: the
dashboard shows it as ``~/miv-snapshot-demo/...`` whatever the folder's real name.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from minivirt_core import Minivirt

from .helpers import image_id_of, qcow2_of

NAME = "miv-snapshot-demo"
NOW = 1_800_000_000.0  # the clock the snapshots see

# Real qcow2 disks (made once, on first use), so that fsck finds nothing wrong.
IMAGES = {  # architectures recorded: the snapshots do not depend on the host's
    "tiny": ('{"disk": true, "arch": "x86_64"}', b"t" * 300_000),
    "alpine-3.22": ('{"disk": true, "arch": "aarch64"}', b"a" * 2_000_000),
    "ubuntu-24.04": ('{"disk": true, "arch": "x86_64"}', b"u" * 5_000_000),
}


def build(home: Path) -> Minivirt:
    """The demo database in ``home/miv-snapshot-demo`` (made afresh), with a file remote beside it."""
    root = home / NAME
    shutil.rmtree(root, ignore_errors=True)
    db, repo = root / "db", root / "repo"
    images = db / "images"
    images.mkdir(parents=True)
    for age, (tag, (config, data)) in enumerate(IMAGES.items()):
        files = {"config.json": config.encode(), "disk.qcow2": qcow2_of(data)}
        image_id = image_id_of(files)
        folder = images / image_id
        folder.mkdir()
        for name, data in files.items():
            (folder / name).write_bytes(data)
            os.utime(folder / name, (NOW, NOW))
        os.utime(folder, (NOW - 3600 * (age + 1) * 5, NOW - 3600 * (age + 1) * 5))
        (images / tag).symlink_to(image_id)
    for name, tag, ports in (("web", "tiny", [{"host_port": 8080, "guest_port": 80}]), ("db", "alpine-3.22", [])):
        vm = db / "vms" / name
        vm.mkdir(parents=True)
        (vm / "config.json").write_text(json.dumps({
            "image": os.readlink(images / tag), "memory": 512, "cpus": 1, "disk": True, "ports": ports,
            "resources": []}))
        backing = f"../../images/{os.readlink(images / tag)}/disk.qcow2"  # an overlay, as `miv create` makes
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", backing, "disk.qcow2"],
                       cwd=vm, check=True)
    (repo / "tags").mkdir(parents=True)
    (repo / "images").mkdir()
    for tag in ("tiny-x86_64", "alpine-x86_64"):
        (repo / "tags" / tag).write_text("0" * 64)
    miv = Minivirt(db)
    miv.remotes.add("shared", f"file://{repo}")
    miv.remotes.add("b2", "https://f003.backblazeb2.com/file/minivirt")
    return miv
