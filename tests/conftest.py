"""Fixtures: a fresh database per test, the real tiny guest (built once per machine)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from .helpers import ROOT

BUILD_SCRIPT = ROOT / "recipes" / "tiny" / "build-tiny.sh"
PACKAGES = ["linux-image-cloud-amd64", "busybox-static", "dropbear-bin", "openssh-sftp-server", "libc6"]


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty database folder; MINIVIRT_DB_PATH points at it."""
    path = tmp_path / "db"
    monkeypatch.setenv("MINIVIRT_DB_PATH", str(path))
    return path


def _tiny_cache_key() -> str:
    policy = subprocess.run(["apt-cache", "policy", *PACKAGES], capture_output=True, text=True).stdout
    versions = [line.split()[-1] for line in policy.splitlines() if "Candidate:" in line]
    h = hashlib.sha256(BUILD_SCRIPT.read_bytes())
    h.update(" ".join(versions).encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class TinyImage:
    path: Path
    id: str


@pytest.fixture(scope="session")
def tiny_image() -> TinyImage:
    """The tiny guest image (config.json + disk.qcow2), built once per machine and cached,
    keyed by the builder script and the Debian package versions it uses."""
    from minivirt_core import imageid

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "minivirt" / "test-images"
    out = cache / f"tiny-{_tiny_cache_key()}"
    if not (out / "disk.qcow2").exists():
        tmp = cache / f".building-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["bash", str(BUILD_SCRIPT), str(tmp)], check=True)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    return TinyImage(out, imageid.compute_id(out))


@pytest.fixture
def tiny_db(db: Path, tiny_image: TinyImage) -> Path:
    """A database holding the tiny image, tagged ``tiny``."""
    images = db / "images"
    images.mkdir(parents=True)
    dest = images / tiny_image.id
    dest.mkdir()
    for name in ("config.json", "disk.qcow2"):
        shutil.copyfile(tiny_image.path / name, dest / name)
    (images / "tiny").symlink_to(tiny_image.id)
    return db
