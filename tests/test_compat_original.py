"""A database written by the original minivirt (PyPI minivirt==0.1) works with ours, both ways."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import image_id_of, iso_bytes, miv, simple_tar

ORIGINAL = "minivirt==0.1"


@pytest.fixture(scope="session")
def original_miv() -> str:
    """The original `miv`, installed once per machine into its own venv."""
    venv = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "minivirt" / "venv-minivirt-0.1"
    exe = venv / "bin" / "miv"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", ORIGINAL], check=True)
    return str(exe)


def original(exe: str, db: Path, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run([exe, *args], input=input, capture_output=True, timeout=120,
                          env={**os.environ, "MINIVIRT_DB_PATH": str(db)})
    assert proc.returncode == 0, proc.stderr.decode()
    return proc


def test_database_written_by_the_original(original_miv: str, db: Path, tmp_path: Path) -> None:
    from .helpers import qcow2_bytes

    disk = qcow2_bytes(tmp_path, "64M")
    files = {"config.json": json.dumps({"disk": True}).encode(), "disk.qcow2": disk}
    image_id = image_id_of(files)
    # The original loads (tar x into a temp folder under images/), tags, and creates a VM.
    original(original_miv, db, "load", "base", input=simple_tar(files))
    original(original_miv, db, "load", "scratch", input=simple_tar({"config.json": b"{}"}))
    original(original_miv, db, "untag", "scratch")
    original(original_miv, db, "create", "base", "oldvm", "--port", "18080:80")
    vm_config = json.loads((db / "vms" / "oldvm" / "config.json").read_text())
    assert vm_config["image"] == image_id

    listed = json.loads(miv(db, "images", "--json").stdout)
    assert {i["id"]: i["tags"] for i in listed} == {image_id: ["base"], image_id_of({"config.json": b"{}"}): []}
    assert b"no problems" in miv(db, "fsck").stderr
    ps = json.loads(miv(db, "ps", "-a", "--json").stdout)
    assert ps[0]["name"] == "oldvm" and ps[0]["state"] == "stopped" and ps[0]["image_label"] == "base"
    assert ps[0]["ports"] == [{"host_port": 18080, "guest_port": 80}]

    # Prune removes the untagged image, keeps the one the VM uses (also once untagged).
    original(original_miv, db, "untag", "base")
    out = miv(db, "prune").stderr.decode()
    assert "removed image" in out
    assert (db / "images" / image_id).is_dir()
    assert not (db / "images" / image_id_of({"config.json": b"{}"})).exists()

    # An image saved by our `miv save` (here one with an installer ISO) loads into it with the
    # original, unchanged; and what the original saves (`tar c *`: the ISO first) loads into ours.
    other = tmp_path / "ours"
    with_iso = {"alpine.iso": iso_bytes(), "config.json": b'{"disk": true, "iso": "alpine.iso"}',
                "disk.qcow2": disk}
    miv(other, "load", "mine", input=simple_tar(with_iso))
    saved = miv(other, "save", "mine").stdout
    original(original_miv, db, "load", "from-ours", input=saved)
    assert os.readlink(db / "images" / "from-ours") == image_id_of(with_iso)
    original(original_miv, db, "fsck")
    assert b"no problems" in miv(db, "fsck").stderr
    theirs = original(original_miv, db, "save", "from-ours").stdout
    third = tmp_path / "third"
    miv(third, "load", "from-original", input=theirs)
    assert os.readlink(third / "images" / "from-original") == image_id_of(with_iso)


def test_original_leftover_temp_folders_are_pruned(db: Path) -> None:
    miv(db, "images")
    leftover = db / "images" / "tmpk2j3h4"
    leftover.mkdir()
    (leftover / "disk.qcow2").write_bytes(b"x" * 4096)
    assert b"tmpk2j3h4" in miv(db, "fsck", rc=1).stdout
    miv(db, "prune")
    assert not leftover.exists()
