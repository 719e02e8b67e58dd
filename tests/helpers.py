"""Helpers shared by the tests: running `miv`, making archives and images."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
MIV = str(Path(sys.executable).parent / "miv")
TEST_VECTOR_ID = "8492b89d0572b9dd3ee9597aa308c0887c1d26844dddbdd1c92408307f677887"


def miv(db: Path, *args: str, input: bytes | None = None, rc: int | None = 0, timeout: float = 300,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run the real `miv` command on database ``db``; check its exit code when ``rc`` is given."""
    full_env = {**os.environ, "MINIVIRT_DB_PATH": str(db), **(env or {})}
    proc = subprocess.run([MIV, *args], input=input, capture_output=True, env=full_env, timeout=timeout,
                          stdin=None if input is not None else subprocess.DEVNULL)
    if rc is not None and proc.returncode != rc:
        raise AssertionError(
            f"miv {' '.join(args)} exited {proc.returncode}, expected {rc}\n"
            f"stdout: {proc.stdout.decode(errors='replace')}\nstderr: {proc.stderr.decode(errors='replace')}"
        )
    return proc


def on_terminal(db: Path, *args: str, answer: bytes | None = None, prompt: bytes = b"[y/N]",
                timeout: float = 300) -> tuple[int, bytes]:
    """Run the real `miv` with stdin, stdout and stderr on a terminal (a pty), typing
    ``answer`` once it has shown ``prompt``; its exit code and everything it wrote."""
    import pty
    import select

    parent, child = pty.openpty()
    proc = subprocess.Popen([MIV, *args], stdin=child, stdout=child, stderr=child, close_fds=True,
                            env={**os.environ, "MINIVIRT_DB_PATH": str(db), "COLUMNS": "120"})
    os.close(child)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if answer is not None and prompt in out:
                os.write(parent, answer)
                answer = None
            ready, _, _ = select.select([parent], [], [], 0.2)
            if ready:
                try:
                    data = os.read(parent, 65536)
                except OSError:  # EIO: the terminal's other side is closed, miv is done
                    break
                if not data:
                    break
                out += data
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=60), bytes(out)
    finally:
        os.close(parent)
        if proc.poll() is None:
            proc.kill()


def wait_until(predicate: Callable[[], T], timeout: float, what: str, poll: float = 0.1) -> T:
    """Wait for ``predicate()`` to be true and return its value: a test waits on a condition,
    never for a fixed time. Fails naming ``what`` it waited for after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)
    return value


def running_in_some_thread(function: str) -> bool:
    """Whether any thread is inside a function of that name now."""
    import sys

    for frame in sys._current_frames().values():
        while frame is not None:
            if frame.f_code.co_name == function:
                return True
            frame = frame.f_back
    return False


def guest_runs(db: Path, vm: str, command: str) -> bool:
    """Whether a process running ``command`` exists in the guest of running VM ``vm`` (over SSH).

    False until the VM's first SSH contact (by whoever started it) has written its
    ``ssh-config``: a second first contact at the same moment can find the well-known key
    already gone and the VM's own key not yet in place, and be refused."""
    if not (db / "vms" / vm / "ssh-config").exists():
        return False
    proc = miv(db, "ssh", vm, f"ps | grep -v grep | grep -qF -- {command!r}", rc=None, timeout=30)
    return proc.returncode == 0


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]], fmt: int = tarfile.GNU_FORMAT) -> bytes:
    """A tar of the given (TarInfo, data) members, in the given format."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def file_member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    return info, data


def simple_tar(files: dict[str, bytes]) -> bytes:
    return tar_bytes([file_member(n, d) for n, d in files.items()])


def qcow2_bytes(tmp: Path, size: str = "1M", backing: str | None = None, data_file: str | None = None) -> bytes:
    """A real qcow2 made by qemu-img (optionally naming a backing or data file)."""
    path = tmp / f"q-{os.urandom(4).hex()}.qcow2"
    args = ["qemu-img", "create", "-q", "-f", "qcow2"]
    opts = []
    if backing:
        args += ["-b", backing, "-F", "raw", "-u"]
    if data_file:
        opts.append(f"data_file={data_file}")
    if opts:
        args += ["-o", ",".join(opts)]
    subprocess.run([*args, str(path), size], check=True)
    data = path.read_bytes()
    path.unlink()
    return data


@functools.cache
def qcow2_of(data: bytes = b"", size: int = 1 << 20) -> bytes:
    """A real qcow2 (qemu-img convert) of ``size`` bytes whose start holds ``data``; cached."""
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "raw", Path(tmp) / "out.qcow2"
        with open(raw, "wb") as f:
            f.write(data)
            f.truncate(max(size, len(data)))
        subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(out)], check=True)
        return out.read_bytes()


@functools.cache
def iso_bytes(text: str = "") -> bytes:
    """A real ISO 9660 image (the cloud-init seed kind minivirt makes); cached."""
    from minivirt_core.cidata import write_cidata

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.iso"
        write_cidata(path, text)
        return path.read_bytes()


def image_files(n: int = 0, disk: bytes | None = None, iso: str | None = None) -> dict[str, bytes]:
    """The files of a valid image: ``config.json`` and a real qcow2 ``disk.qcow2`` (its size
    depends on ``n``, so images of different ``n`` have different ids), optionally an ISO."""
    config: dict[str, object] = {"disk": True}
    files = {"disk.qcow2": disk if disk is not None else qcow2_of(size=(n + 1) << 20)}
    if iso:
        config["iso"] = iso
        files[iso] = iso_bytes(f"image {n}")
    return {"config.json": json.dumps(config).encode(), **files}


def image_tar(n: int = 0, disk: bytes | None = None, iso: str | None = None) -> bytes:
    """A tar of :func:`image_files` (what ``miv save`` writes)."""
    return simple_tar(image_files(n, disk, iso))


def image_id_of(files: dict[str, bytes]) -> str:
    lines = "".join(f"{n}:{hashlib.sha256(files[n]).hexdigest()}\n" for n in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def db_entries(db: Path) -> dict[str, list[str]]:
    """What is in the database's images/, vms/ and staging/ folders."""
    result = {}
    for sub in ("images", "vms", "staging"):
        d = db / sub
        result[sub] = sorted(os.listdir(d)) if d.is_dir() else []
    return result


def put_on_remote(kind: str, folder: Path, server: Any, image_id: str, tgz: bytes, tag: str) -> str:
    """Put an image's .tgz and a tag naming it on a remote: served by ``server`` (a
    StaticServer) under ``repo/`` for kind ``http``, or in ``folder/repo`` for kind ``file``.
    Returns the remote's URL."""
    if kind == "http":
        server.put(f"repo/images/{image_id}.tgz", tgz)
        server.put(f"repo/tags/{tag}", image_id.encode())
        return f"{server.url}/repo"
    (folder / "repo" / "images").mkdir(parents=True, exist_ok=True)
    (folder / "repo" / "tags").mkdir(exist_ok=True)
    (folder / "repo" / "images" / f"{image_id}.tgz").write_bytes(tgz)
    (folder / "repo" / "tags" / tag).write_text(image_id)
    return f"file://{folder / 'repo'}"


def publish(server: Any, files: dict[str, bytes], tag: str) -> tuple[str, bytes]:
    """Serve ``files`` as an image (a gzip'd tar) on ``server``'s remote ``<url>/repo``
    under ``tag``; returns (its id, the .tgz)."""
    import gzip

    image_id = image_id_of(files)
    tgz = gzip.compress(simple_tar(files), compresslevel=1)
    put_on_remote("http", Path(), server, image_id, tgz, tag)
    return image_id, tgz
