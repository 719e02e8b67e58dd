"""Fixtures: a fresh database per test, the real tiny guest (built once per machine)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .helpers import ROOT

BUILD_SCRIPT = ROOT / "recipes" / "tiny" / "build-tiny.sh"
TINY_RECIPE = ROOT / "recipes" / "tiny.yaml"
PACKAGES = ["linux-image-cloud-amd64", "busybox-static", "dropbear-bin", "openssh-sftp-server", "perl-base", "libc6"]
DEBIAN_SCRIPT = ROOT / "recipes" / "debian" / "build-debian.sh"
DEBIAN_RECIPE = ROOT / "recipes" / "debian-12.yaml"
DEBIAN_PACKAGES = ["linux-image-cloud-amd64", "cloud-init", "systemd", "openssh-server", "libc6", "python3",
                   "busybox-static"]
ARM64_PACKAGES = ["linux-image-cloud-arm64:arm64", "busybox-static:arm64", "dropbear-bin:arm64",
                  "openssh-sftp-server:arm64", "perl-base:arm64", "libc6:arm64", "systemd-boot-efi:arm64"]


# A test using one of these fixtures (directly or through another) must carry the marker,
# so `-m "not vm"` or `-m "not s3"` really leaves out what needs QEMU or SeaweedFS.
FIXTURE_MARKERS = {"tiny_image": "vm", "tiny_aarch64_image": "vm", "debian_image": "vm", "s3_server": "s3"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse to run a test that needs the tiny image or the S3 server without its marker."""
    missing = sorted({
        f"{item.nodeid}: needs {fixture} (through its fixtures), so mark it @pytest.mark.{marker}"
        for item in items for fixture, marker in FIXTURE_MARKERS.items()
        if fixture in getattr(item, "fixturenames", ()) and item.get_closest_marker(marker) is None
    })
    if missing:
        raise pytest.UsageError("tests without the marker of what they need:\n" + "\n".join(missing))


def kill_qemus_under(folder: Path) -> list[int]:
    """Kill every QEMU whose working directory is inside ``folder`` (a test's databases)."""
    import signal

    killed = []
    root = str(folder.resolve())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/cwd").startswith(root) and b"qemu-system" in Path(
                    f"/proc/{entry}/cmdline").read_bytes():
                os.kill(int(entry), signal.SIGKILL)
                killed.append(int(entry))
        except OSError:
            continue
    return killed


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An empty database folder; MINIVIRT_DB_PATH points at it. A VM a failed test left
    running is killed afterwards, so it cannot slow down the tests (or benchmarks) after it."""
    path = tmp_path / "db"
    monkeypatch.setenv("MINIVIRT_DB_PATH", str(path))
    yield path
    kill_qemus_under(tmp_path)


def builder_files(recipe: Path = TINY_RECIPE, script: Path = BUILD_SCRIPT) -> list[Path]:
    """What makes a test image: its recipe and script (with the script's folder and the
    builders' shared recipes/lib), and the
    code a build runs (every module of minivirt_core that loading the builder imports, all
    of qemu/, the core's data), found afresh in a clean interpreter, so a new or split
    module is counted too."""
    code = ("import sys, minivirt_core.recipes.build, minivirt_core.qemu.monitor\n"
            "print('\\n'.join(m.__file__ for n, m in sys.modules.items()\n"
            "                 if n.split('.')[0] == 'minivirt_core' and getattr(m, '__file__', None)))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    core = ROOT / "minivirt_core"
    files = {Path(line) for line in loaded.stdout.split()}
    files |= set((core / "qemu").glob("*.py")) | {p for p in (core / "data").rglob("*") if p.is_file()}
    folders = [script.parent] + ([ROOT / "recipes" / "lib"] if "recipes/lib" in script.read_text() or
                                 "../lib/" in script.read_text() else [])
    files |= {recipe, *(p for d in folders for p in d.rglob("*") if p.is_file())}
    return sorted(p.resolve() for p in files)


def image_cache_key(packages: list[str], recipe: Path = TINY_RECIPE, script: Path = BUILD_SCRIPT,
                    salt: str = "") -> str:
    """The key of a test image: the hash of :func:`builder_files` and of the candidate
    versions of the Debian ``packages`` it is made of (``salt`` first, when given)."""
    policy = subprocess.run(["apt-cache", "policy", *packages], capture_output=True, text=True).stdout
    versions = [line.split()[-1] for line in policy.splitlines() if "Candidate:" in line]
    h = hashlib.sha256()
    if salt:
        h.update(salt.encode())
    for path in builder_files(recipe, script):
        h.update(f"{path.relative_to(ROOT)}:{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    h.update(" ".join(versions).encode())
    return h.hexdigest()[:16]


def _tiny_cache_key(arch: str = "x86_64") -> str:
    packages = PACKAGES if arch == "x86_64" else [*PACKAGES, *ARM64_PACKAGES]
    # the x86_64 key stays what it was: its cached images stay valid
    return image_cache_key(packages, salt="" if arch == "x86_64" else f"arch:{arch}\n")


def images_cache_dir() -> Path:
    """Where test images are kept, once per machine."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "minivirt" / "test-images"


@dataclass(frozen=True)
class TinyImage:
    path: Path
    id: str
    build_log: str


def built_image(recipe: Path, name: str, key: str, timeout: float, args: tuple[str, ...] = (),
                tag: str | None = None, made: str | None = None) -> TinyImage:
    """The image `miv build RECIPE ARGS --tag TAG` makes (its tests included) in an empty
    database, kept under :func:`images_cache_dir` as ``NAME-KEY``, built only when missing;
    ``made`` is the tag as the build writes it (``{arch}`` filled in), default ``NAME``."""
    from minivirt_core import imageid

    from .helpers import miv

    cache = images_cache_dir()
    out = cache / f"{name}-{key}"
    log = out.with_suffix(".log")
    if not (out / "disk.qcow2").exists():
        work = cache / f".building-{name}-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        db = work / "db"
        proc = miv(db, "build", str(recipe), *args, "--tag", tag or name, timeout=timeout)
        image_dir = db / "images" / os.readlink(db / "images" / (made or name))
        assert sorted(os.listdir(db / "vms")) == [] and sorted(os.listdir(db / "staging")) == []
        shutil.rmtree(out, ignore_errors=True)
        image_dir.rename(out)
        log.write_text(proc.stderr.decode() + proc.stdout.decode())
        shutil.rmtree(work)
    return TinyImage(out, imageid.compute_id(out), log.read_text() if log.exists() else "")


def _cached_tiny(arch: str) -> TinyImage:
    """The tiny guest image of ``arch``, built by `miv build recipes/tiny.yaml --arch ARCH
    --tag tiny-{arch}` (its tests included) in an empty database, once per machine: cached,
    keyed by the recipe, the builder script, the code of the build (:func:`builder_files`)
    and the Debian package versions it uses."""
    name = "tiny" if arch == "x86_64" else f"tiny-{arch}"
    return built_image(TINY_RECIPE, name, _tiny_cache_key(arch), 900, ("--arch", arch), "tiny-{arch}",
                       f"tiny-{arch}")


def debian_build_unavailable() -> str | None:
    """Why this machine cannot build the offline Debian images (recipes/debian/build-debian.sh),
    or None: the tests that need them skip with that reason instead of failing. Set
    MINIVIRT_SKIP_DEBIAN=1 to leave them out on purpose (they add minutes to a run)."""
    if os.environ.get("MINIVIRT_SKIP_DEBIAN") == "1":
        return "MINIVIRT_SKIP_DEBIAN=1: the real Debian guests are left out"
    if os.geteuid() != 0:
        return "the Debian images are built with mmdebstrap --mode=root: run the tests as root"
    missing = [t for t in ("mmdebstrap", "sfdisk", "mkfs.vfat", "mcopy", "syslinux", "mkfs.ext4", "qemu-img")
               if not shutil.which(t)]
    if missing:
        return f"the Debian image builder needs {', '.join(missing)}: scripts/setup installs them"
    mirror = subprocess.run(["apt-get", "indextargets", "--format", "$(REPO_URI)", "Label: Debian",
                             "Identifier: Packages"], capture_output=True, text=True).stdout.strip()
    if not mirror and not os.environ.get("MINIVIRT_DEBIAN_MIRROR"):
        return "apt has no Debian mirror here (run apt-get update, or set MINIVIRT_DEBIAN_MIRROR)"
    return None


@pytest.fixture(scope="session")
def debian_image() -> TinyImage:
    """The offline Debian 12 image, built by `miv build recipes/debian-12.yaml` (its tests
    included) once per machine, cached and keyed like the tiny image. The build runs
    mmdebstrap as root: skipped when not root or mmdebstrap is missing."""
    why_not = debian_build_unavailable()
    if why_not:
        pytest.skip(why_not)
    key = image_cache_key(DEBIAN_PACKAGES, DEBIAN_RECIPE, DEBIAN_SCRIPT)
    return built_image(DEBIAN_RECIPE, "debian-12", key, 3600)


@pytest.fixture(scope="session")
def tiny_image() -> TinyImage:
    """The x86_64 tiny guest image (see :func:`_cached_tiny`)."""
    return _cached_tiny("x86_64")


@pytest.fixture(scope="session")
def tiny_aarch64_image() -> TinyImage:
    """The aarch64 tiny guest image, built here from arm64 packages and tested under emulation."""
    return _cached_tiny("aarch64")


def add_image(db: Path, image: TinyImage, tag: str) -> None:
    """Put a copy of cached ``image`` into database ``db``, tagged ``tag``."""
    images = db / "images"
    images.mkdir(parents=True, exist_ok=True)
    dest = images / image.id
    dest.mkdir()
    for name in ("config.json", "disk.qcow2"):
        shutil.copyfile(image.path / name, dest / name)
    (images / tag).symlink_to(image.id)


@pytest.fixture
def tiny_db(db: Path, tiny_image: TinyImage) -> Path:
    """A database holding the tiny image, tagged ``tiny``."""
    return install_tiny(db, tiny_image)


def install_tiny(db: Path, tiny_image: TinyImage) -> Path:
    """Put the tiny image into database folder ``db``, tagged ``tiny``."""
    add_image(db, tiny_image, "tiny")
    return db


@pytest.fixture
def arm_db(db: Path, tiny_aarch64_image: TinyImage) -> Path:
    """A database holding the aarch64 tiny image, tagged ``tiny-aarch64``."""
    add_image(db, tiny_aarch64_image, "tiny-aarch64")
    return db


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """A SeaweedFS S3 server on 127.0.0.1, for the whole session: an admin key, and
    anonymous read of the bucket."""
    from .s3server import S3Server

    server = S3Server(tmp_path_factory.mktemp("s3")).start()
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server):
    """The S3 server with an empty bucket (tests must not see each other's objects)."""
    s3_server.clear()
    return s3_server


@pytest.fixture
def running_vm(tiny_db: Path):
    """``tiny_db`` with a running VM ``v`` of the tiny image (200 MiB), reached once over SSH."""
    from .helpers import miv

    miv(tiny_db, "create", "tiny", "v", "-m", "200")
    miv(tiny_db, "start", "v", "--daemon", "--wait-for-ssh", "120")
    yield tiny_db
    miv(tiny_db, "destroy", "v", rc=None)


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    """A 2 MiB tmpfs to fill (needs root: mount; skipped otherwise)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {proc.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)
