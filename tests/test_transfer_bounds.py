"""Transfers have bounds, and remotes are untrusted: hostile servers and folders (an
endless body, a drip, a gzip bomb, FIFOs and devices, redirects anywhere), a full disk,
parallel pulls and downloads of one thing, and killed pushes' leftovers. Against the
real local HTTP server, real file:// folders, real tmpfs mounts and real SeaweedFS."""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from .helpers import (
    MIV,
    db_entries,
    image_files,
    image_id_of,
    miv,
    publish,
    put_on_remote,
    qcow2_bytes,
    qcow2_of,
    simple_tar,
    wait_until,
)
from .httpserver import StaticServer

STALL = {"MINIVIRT_STALL_TIMEOUT": "2"}
FETCH = """
import asyncio, sys
from pathlib import Path
from minivirt_core.download import fetch
from minivirt_core.errors import MinivirtError
try:
    print(asyncio.run(fetch(sys.argv[1], Path(sys.argv[2]))))
except MinivirtError as e:
    print(f"{type(e).__name__}: {e.message}")
"""


@pytest.fixture
def http(tmp_path: Path):
    server = StaticServer(tmp_path / "www").start()
    yield server
    server.stop()


def random_image(mib: int = 0) -> dict[str, bytes]:
    """A valid image whose qcow2 disk holds ``mib`` MiB of random data (it does not
    compress, so moving it takes a while)."""
    return image_files(disk=qcow2_of(os.urandom(mib << 20), mib << 20)) if mib else image_files()


def id_of_digests(digests: dict[str, str]) -> str:
    return hashlib.sha256("".join(f"{n}:{digests[n]}\n" for n in sorted(digests)).encode()).hexdigest()


def start_miv(db: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([MIV, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "MINIVIRT_DB_PATH": str(db), **(env or {})})


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def assert_nothing_left(db: Path) -> None:
    entries = db_entries(db)
    assert [e for e in entries["images"] if len(e) == 64] == [] and entries["staging"] == []
    cache = db / "cache"
    assert not cache.exists() or os.listdir(cache) == []


# Pull bounds -------------------------------------------------------------------


def _endless_zeros_in_gzip(tar: bytes) -> tuple[bytes, bytes]:
    """A gzip stream of ``tar`` that never ends: (its start, a block of compressed zeros
    that continues it validly when repeated for ever)."""
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    start = z.compress(tar) + z.flush(zlib.Z_FULL_FLUSH)
    block = z.compress(bytes(1 << 20)) + z.flush(zlib.Z_FULL_FLUSH)
    return start, block


@pytest.mark.parametrize("kind", ["junk-after-gzip", "junk-announced", "zeros-in-gzip", "zeros-after-tar",
                                  "empty-gzip-members"])
def test_pull_stops_at_the_end_of_the_archive_when_the_server_sends_an_endless_body(
        db: Path, http: StaticServer, tmp_path: Path, kind: str) -> None:
    """Regression: a server sending an endless body after a valid archive filled 7 GB of
    cache in 20 s. Reading stops shortly after the tar's end marker; more is an error."""
    files = random_image()
    iid = image_id_of(files)
    tar = simple_tar(files)
    if kind == "zeros-in-gzip":
        served, block = _endless_zeros_in_gzip(tar)
    elif kind == "zeros-after-tar":
        served, block = tar, bytes(1 << 16)
    elif kind == "empty-gzip-members":  # valid gzip, adding nothing: only the transfer can stop it
        served, block = gzip.compress(tar), gzip.compress(b"") * 3000
    else:
        served, block = gzip.compress(tar), os.urandom(1 << 16)
    path = f"/repo/images/{iid}.tgz"
    http.put(path[1:], served)
    http.put("repo/tags/endless", iid.encode())
    http.endless[path] = (block, kind == "junk-announced")
    miv(db, "remote", "add", "web", f"{http.url}/repo")
    started = time.monotonic()
    err = miv(db, "pull", "web", "endless", rc=1, timeout=120).stderr.decode()
    # Said by the transfer ("sends more data after the end of the archive") or by the
    # importer, if it met the extra bytes first.
    assert err.startswith("error: ") and "archive" in err and "Traceback" not in err, err
    assert time.monotonic() - started < 60
    assert http.sent[path] < len(served) + (64 << 20)  # (what the socket buffers took, at most)
    assert_nothing_left(db)


def test_pull_from_a_server_that_drips_gives_up_after_the_stall_limit(db: Path, http: StaticServer,
                                                                      tmp_path: Path) -> None:
    """Regression: a server dripping one byte every 20 s was never given up."""
    iid, _ = publish(http, random_image(), "drip")
    http.drip[f"/repo/images/{iid}.tgz"] = 0.2
    miv(db, "remote", "add", "web", f"{http.url}/repo")
    started = time.monotonic()
    err = miv(db, "pull", "web", "drip", rc=1, env=STALL, timeout=60).stderr.decode()
    assert "no progress for 2 s" in err and "MINIVIRT_STALL_TIMEOUT" in err and "Traceback" not in err, err
    assert time.monotonic() - started < 30
    assert not any(len(e) == 64 for e in os.listdir(db / "images"))


def test_a_tag_dripped_by_the_server_gives_up_too(db: Path, http: StaticServer) -> None:
    http.put("repo/tags/slow", b"ab" * 32)
    http.drip["/repo/tags/slow"] = 0.5
    miv(db, "remote", "add", "web", f"{http.url}/repo")
    err = miv(db, "pull", "web", "slow", rc=1, env=STALL, timeout=60).stderr.decode()
    assert "no progress for 2 s" in err, err


def fetch_in_a_process(url: str, cache: Path, env: dict[str, str] | None = None,
                       timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """download.fetch(url, cache) through the public API, in its own process (so a fetch
    that never ends can be stopped); prints the cached path, or the error's class and message."""
    return subprocess.run([sys.executable, "-c", FETCH, url, str(cache)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_recipe_download_from_a_server_that_drips_gives_up(tmp_path: Path, http: StaticServer) -> None:
    url = http.put("files/big.img", os.urandom(100000))
    http.drip["/files/big.img"] = 0.2
    started = time.monotonic()
    out = fetch_in_a_process(url, tmp_path / "cache", {"MINIVIRT_STALL_TIMEOUT": "1.5"}, timeout=60).stdout
    assert out.startswith("Timeout: ") and "no progress for 1.5 s" in out, out
    assert time.monotonic() - started < 30
    assert not (tmp_path / "cache" / hashlib.sha256(url.encode()).hexdigest()).exists()


def test_an_oversized_tag_is_refused(db: Path, http: StaticServer) -> None:
    """Tags are read with a small size cap (a tag that is a huge file is not read whole)."""
    http.put("repo/tags/huge", b"ab" * 32 + b"\n" * (8 << 20))
    miv(db, "remote", "add", "web", f"{http.url}/repo")
    err = miv(db, "pull", "web", "huge", rc=1).stderr.decode()
    assert "is larger than 1024 bytes" in err, err
    assert http.sent.get("/repo/tags/huge", 0) < 4 << 20


BOMB_MIB = 512


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, bytes]:
    """(id, .tgz) of a valid image whose disk is a qcow2 header and 512 MiB of zeros:
    half a megabyte compressed."""
    head = qcow2_bytes(tmp_path_factory.mktemp("bomb"), "1G")
    size = BOMB_MIB << 20
    disk = hashlib.sha256(head)
    import tarfile

    config = b'{"disk": true}'
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    out = []
    for name, length in (("config.json", len(config)), ("disk.qcow2", size)):
        info = tarfile.TarInfo(name)
        info.size = length
        out.append(z.compress(info.tobuf(format=tarfile.GNU_FORMAT)))
        if name == "config.json":
            out.append(z.compress(config + bytes(-length % 512)))
    out.append(z.compress(head))
    zeros = bytes(1 << 20)
    left = size - len(head)
    while left:
        piece = zeros[: min(left, len(zeros))]
        out.append(z.compress(piece))
        disk.update(piece)
        left -= len(piece)
    end = 1024
    end += -(512 * 3 + size + end) % 10240
    out.append(z.compress(bytes(end)))
    out.append(z.flush())
    digests = {"config.json": hashlib.sha256(config).hexdigest(), "disk.qcow2": disk.hexdigest()}
    return id_of_digests(digests), b"".join(out)


# Run by a small Python of its own, which reports its children's peak RSS: measured on
# `miv` straight from pytest (wait4), the peak would include pytest's own memory, which a
# vfork'ed child carries until it execs (the kernel keeps the high-water mark across exec).
_MEASURE = ("import resource, subprocess, sys\n"
            "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
            "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")


def _peak_rss_mib(args: list[str], db: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    """(peak RSS in MiB, "rc=N " + stderr) of `miv ARGS`, measured by the kernel."""
    proc = subprocess.run([sys.executable, "-c", _MEASURE, MIV, *args], capture_output=True, timeout=600,
                          stdin=subprocess.DEVNULL, env={**os.environ, "MINIVIRT_DB_PATH": str(db), **(env or {})})
    rc, maxrss_kib = proc.stdout.split()
    return int(maxrss_kib) // 1024, f"rc={int(rc)} {proc.stderr.decode()}"


@pytest.mark.parametrize("kind", ["http", "file"])
def test_gzip_bomb_is_decompressed_in_constant_memory(db: Path, http: StaticServer, tmp_path: Path,
                                                      bomb: tuple[str, bytes], kind: str) -> None:
    """Regression: a 4 MB gzip bomb loaded as a 4 GiB image with a 2.1 GB peak RSS."""
    iid, tgz = bomb
    miv(db, "remote", "add", "r", put_on_remote(kind, tmp_path, http, iid, tgz, "bomb"))
    peak, err = _peak_rss_mib(["pull", "r", "bomb"], db)
    assert "rc=0" in err and peak < 200, (peak, err)
    assert os.path.getsize(db / "images" / iid / "disk.qcow2") == BOMB_MIB << 20


# A full disk ---------------------------------------------------------------------


def test_pull_that_fills_the_disk_is_a_clear_error(small_tmpfs: Path, http: StaticServer,
                                                   bomb: tuple[str, bytes]) -> None:
    """Regression: ENOSPC during a pull was a traceback."""
    iid, tgz = bomb
    db = small_tmpfs / "db"
    miv(db, "remote", "add", "web", put_on_remote("http", small_tmpfs, http, iid, tgz, "bomb"))
    err = miv(db, "pull", "web", "bomb", rc=1).stderr.decode()
    assert "no space left on the device while writing" in err and "miv prune" in err and "Traceback" not in err, err
    assert_nothing_left(db)


def test_remote_add_on_a_full_disk_is_a_clear_error(small_tmpfs: Path) -> None:
    """Regression: ENOSPC writing remotes.json was a traceback."""
    db = small_tmpfs / "db"
    miv(db, "images")
    with open(small_tmpfs / "filler", "wb") as f:
        try:
            while True:
                f.write(bytes(1 << 20))
                f.flush()
        except OSError:
            pass
    err = miv(db, "remote", "add", "x", "https://example.com/bucket", rc=1).stderr.decode()
    assert "no space left on the device while writing" in err and "remotes.json" in err and "Traceback" not in err, err
    assert not (db / "remotes.json").exists()
    assert [n for n in os.listdir(db) if n.endswith(".tmp")] == []


# file:// remotes read regular files only -----------------------------------------


def _file_remote(tmp_path: Path, db: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "tags").mkdir(parents=True)
    (repo / "images").mkdir()
    miv(db, "remote", "add", "fr", f"file://{repo}")
    return repo


def test_file_remote_tag_that_is_a_fifo_or_a_device_is_refused(db: Path, tmp_path: Path) -> None:
    """Regression: a tag that is a FIFO hung the pull; /dev/zero ate all memory."""
    repo = _file_remote(tmp_path, db)
    os.mkfifo(repo / "tags" / "fifo")
    (repo / "tags" / "zero").symlink_to("/dev/zero")
    for tag in ("fifo", "zero"):
        err = miv(db, "pull", "fr", tag, rc=1, timeout=30).stderr.decode()
        assert f"tags/{tag} is not a regular file" in err, err
    assert_nothing_left(db)


def test_file_remote_image_that_is_a_fifo_or_a_device_is_refused(db: Path, tmp_path: Path) -> None:
    repo = _file_remote(tmp_path, db)
    for name, make in (("fifo", os.mkfifo), ("zero", lambda p: p.symlink_to("/dev/zero"))):
        iid = hashlib.sha256(name.encode()).hexdigest()
        make(repo / "images" / f"{iid}.tgz")
        (repo / "tags" / name).write_text(iid)
        err = miv(db, "pull", "fr", name, rc=1, timeout=30).stderr.decode()
        assert f"images/{iid}.tgz is not a regular file" in err, err
    assert_nothing_left(db)


def test_recipe_download_of_a_file_url_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    """Regression: a file:// download of a FIFO hung (and of /dev/zero filled the disk)."""
    os.mkfifo(tmp_path / "fifo")
    for source in (tmp_path / "fifo", Path("/dev/zero")):
        out = fetch_in_a_process(f"file://{source}", tmp_path / "cache", timeout=30).stdout
        assert out.startswith("InvalidInput: ") and "not a regular file" in out, out
    assert os.listdir(tmp_path / "cache") == []


# Remote tags and URLs ------------------------------------------------------------


def test_remote_tag_naming_a_host_file_is_refused(db: Path, tmp_path: Path, http: StaticServer) -> None:
    """Regression: `miv pull fr ../../../../etc/shadow x` read a host file and printed its start."""
    _file_remote(tmp_path, db)
    miv(db, "remote", "add", "web", f"{http.url}/repo")
    for remote in ("fr", "web"):
        for tag in ("../../../../etc/passwd", "../../../../../../etc/passwd", ".hidden"):
            err = miv(db, "pull", remote, tag, "x", rc=1).stderr.decode()
            assert "invalid tag" in err and "root" not in err, err
    assert not any(r.path.startswith("/etc") or ".." in r.path for r in http.requests)
    assert_nothing_left(db)


def test_tag_file_content_is_not_echoed(db: Path, tmp_path: Path) -> None:
    repo = _file_remote(tmp_path, db)
    (repo / "tags" / "secret").write_text("root:$6$secret-hash:19000:0:99999:7:::\n")
    err = miv(db, "pull", "fr", "secret", rc=1).stderr.decode()
    assert "tags/secret does not hold an image id" in err and "secret-hash" not in err, err


def test_remote_url_with_credentials_is_refused_and_never_printed(db: Path) -> None:
    for url in ("https://user:hunter2-pass@s3.example.com/bucket", "https://hunter2-pass@s3.example.com/bucket"):
        proc = miv(db, "remote", "add", "creds", url, rc=1)
        out = (proc.stdout + proc.stderr).decode()
        assert "holds credentials" in out and "AWS_ACCESS_KEY_ID" in out and "hunter2" not in out, out
    assert not (db / "remotes.json").exists()


def test_remote_with_credentials_in_an_old_remotes_json_is_shown_redacted_and_not_used(db: Path) -> None:
    db.mkdir()
    (db / "remotes.json").write_text(json.dumps({"old": "https://user:hunter2-pass@127.0.0.1:9/bucket"}))
    listed = miv(db, "remote", "list", "--json").stdout.decode()
    assert "hunter2" not in listed and "***@127.0.0.1:9/bucket" in listed, listed
    assert "hunter2" not in miv(db, "remote", "list").stdout.decode()
    err = miv(db, "pull", "old", "x", rc=1).stderr.decode()
    assert "holds credentials" in err and "hunter2" not in err and "miv remote remove old" in err, err


@pytest.mark.parametrize("url", ["https://host/my bucket", "https://host/bucket\n", "https://host/buck\net",
                                 "file:///srv/my\trepo", "https://host/bucket?x=1"])
def test_remote_url_with_a_space_or_newline_is_a_clear_error(db: Path, url: str) -> None:
    """Regression: a space or a newline went into remotes.json (urllib drops newlines)."""
    err = miv(db, "remote", "add", "bad", url, rc=1).stderr.decode()
    assert "invalid remote URL" in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) <= 2, err
    assert not (db / "remotes.json").exists()


def test_relative_file_url_is_refused(db: Path) -> None:
    """Regression: `file://relative/path` was read as /path."""
    for url in ("file://relative/path", "file://relative", "file:relative/path"):
        err = miv(db, "remote", "add", "rel", url, rc=1).stderr.decode()
        assert "file:///absolute/path" in err, err
    miv(db, "remote", "add", "local", "file://localhost/srv/repo")


@pytest.mark.parametrize("target", ["ftp://127.0.0.1:9/x.tgz", "file:///etc/passwd", "gopher://127.0.0.1/x"])
def test_redirects_go_to_http_and_https_only(db: Path, http: StaticServer, tmp_path: Path, target: str) -> None:
    """Regression: urllib follows redirects to ftp:// (and its refusal of file:// was an HTTP 302 error)."""
    iid, _ = publish(http, random_image(), "moved")
    http.redirects[f"/repo/images/{iid}.tgz"] = target
    miv(db, "remote", "add", "web", f"{http.url}/repo")
    err = miv(db, "pull", "web", "moved", rc=1).stderr.decode()
    scheme = target.split(":")[0]
    assert f"redirects to {scheme}://" in err and "only http and https" in err, err
    assert "passwd" not in err
    assert_nothing_left(db)
    # Redirects within http still work.
    http.redirects[f"/repo/images/{iid}.tgz"] = f"{http.url}/elsewhere/{iid}.tgz"
    http.put(f"elsewhere/{iid}.tgz", (http.root / "repo" / "images" / f"{iid}.tgz").read_bytes())
    miv(db, "pull", "web", "moved")
    assert os.readlink(db / "images" / "moved") == iid


# Parallel transfers of one thing ---------------------------------------------------


def test_parallel_pulls_of_one_image_all_succeed_with_one_id(db: Path, http: StaticServer, tmp_path: Path) -> None:
    """Regression: parallel pulls shared one unlocked .part (`incorrect header check`, or a
    FileNotFoundError traceback)."""
    iid, _ = publish(http, random_image(6), "par")
    miv(db, "remote", "add", "web", f"{http.url}/repo")
    http.throttle = 0.005  # a few seconds: the pulls overlap
    env = {**os.environ, "MINIVIRT_DB_PATH": str(db)}
    procs = [subprocess.Popen([MIV, "pull", "web", "par", f"par{i}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env) for i in range(4)]
    results = [(p.wait(120), *p.communicate()) for p in procs]
    for rc, out, err in results:
        assert rc == 0, err.decode()
        assert out.decode().strip() == iid[:12]
    assert [os.readlink(db / "images" / f"par{i}") for i in range(4)] == [iid] * 4
    assert sum(1 for r in http.requests if r.path.endswith(".tgz")) == 1
    assert_nothing_left_but(db, iid)
    assert b"no problems" in miv(db, "fsck").stderr


def assert_nothing_left_but(db: Path, iid: str) -> None:
    entries = db_entries(db)
    assert [e for e in entries["images"] if len(e) == 64] == [iid] and entries["staging"] == []
    assert os.listdir(db / "cache") == []




def test_parallel_downloads_of_one_url_are_both_right(tmp_path: Path, http: StaticServer) -> None:
    """Regression: two builds downloading one URL shared one .part (4 MiB cached as 8 MiB)."""
    data = os.urandom(4 << 20)
    url = http.put("files/disk.img", data)
    http.throttle = 0.005
    cache = tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-c", FETCH, url, str(cache)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(2)]  # (two builds)
    outs = [(p.wait(120), *p.communicate()) for p in procs]
    for rc, _out, err in outs:
        assert rc == 0, err.decode()
    paths = {out.decode().strip() for _, out, _ in outs}
    assert len(paths) == 1
    assert Path(paths.pop()).read_bytes() == data
    assert os.listdir(cache) == [hashlib.sha256(url.encode()).hexdigest()]
    assert sum(1 for r in http.requests if r.path == "/files/disk.img") == 1


# Abandoned partial downloads -----------------------------------------------------


def test_prune_removes_abandoned_partial_downloads_but_not_live_ones(db: Path, http: StaticServer,
                                                                     tmp_path: Path) -> None:
    iid, tgz = publish(http, random_image(4), "big")
    miv(db, "remote", "add", "web", f"{http.url}/repo")
    http.throttle = 0.02
    proc = start_miv(db, "pull", "web", "big")
    part = db / "cache" / f"pull-{iid}.tgz.part"
    wait_until(lambda: part.exists() and part.stat().st_size > len(tgz) // 4, 60, "a quarter of the download",
               poll=0.01)
    # While the pull runs, its .part is not touched.
    assert b"nothing to prune" in miv(db, "prune").stderr
    kill(proc)
    live = db / "cache" / "other.part"
    live.write_bytes(b"x" * 1000)
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a transfer in progress holds it
        assert b"would remove leftover cache/" in miv(db, "prune", "--dry-run").stderr
        assert part.exists()
        out = miv(db, "prune").stderr.decode()
        assert f"removed leftover cache/{part.name}" in out and "other.part" not in out, out
    assert not part.exists() and live.exists()


# Leftovers of killed pushes ----------------------------------------------------------


def _load_big(db: Path, tmp_path: Path, mib: int) -> None:
    miv(db, "load", "big", input=simple_tar(random_image(mib)))


def test_killed_file_push_leaves_no_temp_file_after_the_next_push(db: Path, tmp_path: Path) -> None:
    """Regression: a killed push to a file:// remote left hidden temp files in its folder."""
    _load_big(db, tmp_path, 64)
    repo = tmp_path / "repo"
    repo.mkdir()
    miv(db, "remote", "add", "fr", f"file://{repo}")
    proc = start_miv(db, "push", "fr", "big", "big")

    def temps() -> list[str]:
        return [n for n in os.listdir(repo / "images") if n.startswith(".")] if (repo / "images").exists() else []

    wait_until(lambda: temps() or proc.poll() is not None, 60, "the push's temp file", poll=0.01)
    kill(proc)
    assert temps(), "the push ended before it could be killed"
    miv(db, "push", "fr", "big", "big")
    assert temps() == [] and [n for n in os.listdir(repo / "tags") if n.startswith(".")] == []
    assert len(os.listdir(repo / "images")) == 1


@pytest.mark.s3
def test_killed_s3_push_leaves_no_multipart_upload_after_the_next_push(db: Path, tmp_path: Path, s3) -> None:
    """Regression: a killed push left its incomplete multipart upload (337 MB seen)."""
    _load_big(db, tmp_path, 64)
    miv(db, "remote", "add", "sw", s3.url())
    client = s3.client()
    proc = start_miv(db, "push", "sw", "big", "big", env=s3.env)

    def uploads() -> list[dict]:
        return client.list_multipart_uploads(Bucket="minivirt").get("Uploads", [])

    def parts_sent() -> bool:
        return any(client.list_parts(Bucket="minivirt", Key=u["Key"], UploadId=u["UploadId"]).get("Parts")
                   for u in uploads())

    wait_until(lambda: parts_sent() or proc.poll() is not None, 60, "a part of the upload", poll=0.01)
    kill(proc)
    assert uploads(), "the push ended before it could be killed"
    miv(db, "push", "sw", "big", "big", env=s3.env)
    assert uploads() == []
    assert not [n for n in os.listdir(db / "cache") if "upload" in n]


@pytest.mark.s3
def test_push_leaves_another_pushers_live_upload_alone(db: Path, tmp_path: Path, s3) -> None:
    """Another machine's upload in progress (no note of ours, fresh) is not aborted."""
    client = s3.client()
    key = f"images/{'ab' * 32}.tgz"
    upload = client.create_multipart_upload(Bucket="minivirt", Key=key)["UploadId"]
    client.upload_part(Bucket="minivirt", Key=key, UploadId=upload, PartNumber=1, Body=b"x" * 1000)
    miv(db, "load", "small", input=simple_tar(random_image()))
    miv(db, "remote", "add", "sw", s3.url())
    miv(db, "push", "sw", "small", "small", env=s3.env)
    ids = [u["UploadId"] for u in client.list_multipart_uploads(Bucket="minivirt").get("Uploads", [])]
    assert ids == [upload]
    client.abort_multipart_upload(Bucket="minivirt", Key=key, UploadId=upload)
