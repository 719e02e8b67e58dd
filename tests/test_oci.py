"""OCI registries: pull and push against a real registry (Debian's docker-registry), with
skopeo and umoci as independent clients. Nothing is mocked."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from .helpers import db_entries, image_files, image_id_of, miv, simple_tar
from .registry import PASSWORD, USER, Registry

pytestmark = pytest.mark.skipif(not all(map(__import__("shutil").which, ("docker-registry", "skopeo", "umoci"))),
                                reason="docker-registry, skopeo and umoci are installed by scripts/setup")


@pytest.fixture
def registry(tmp_path: Path):
    """An anonymous registry with empty storage."""
    r = Registry(tmp_path / "registry").start()
    yield r
    r.stop()


@pytest.fixture
def htpasswd_registry(tmp_path: Path):
    """A registry that wants Basic credentials (htpasswd)."""
    r = Registry(tmp_path / "registry-basic", auth="htpasswd").start()
    yield r
    r.stop()


@pytest.fixture
def token_registry(tmp_path: Path):
    """A registry with token auth: a token server issues signed tokens it verifies."""
    r = Registry(tmp_path / "registry-token", auth="token").start()
    yield r
    r.stop()


def load(db: Path, n: int = 0, tag: str = "t", config: dict[str, object] | None = None) -> str:
    files = image_files(n)
    if config is not None:
        files["config.json"] = json.dumps(config).encode()
    miv(db, "load", tag, input=simple_tar(files))
    return image_id_of(files)


def add_remote(db: Path, registry: Registry, name: str = "reg", namespace: str = "minivirt") -> None:
    miv(db, "remote", "add", name, f"oci://{registry.host}/{namespace}", "--insecure")


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, check=True, timeout=120)


def test_push_then_pull_gives_the_same_image_id_and_a_second_push_uploads_no_blob(
        registry: Registry, tmp_path: Path) -> None:
    db, empty = tmp_path / "a", tmp_path / "b"
    image_id = load(db)
    add_remote(db, registry)
    out = miv(db, "push", "reg", "t", "disk:v1")
    assert b"pushed" in out.stderr
    blobs = registry.blobs()
    assert len(blobs) == 3  # the layer, the config, the manifest (a registry keeps it as a blob too)
    mtimes = {p: p.stat().st_mtime_ns for p in registry.storage.rglob("data")}
    out = miv(db, "push", "reg", "t", "disk:v1")
    assert b"already" in out.stderr
    assert {p: p.stat().st_mtime_ns for p in registry.storage.rglob("data")} == mtimes
    add_remote(empty, registry)
    out = miv(empty, "pull", "reg", "disk:v1", "back")
    assert out.stdout.decode().strip() == image_id[:12]
    assert (empty / "images" / image_id).is_dir() and os.readlink(empty / "images" / "back") == image_id
    assert db_entries(empty)["staging"] == []
    assert b"already here" in miv(empty, "pull", "reg", "disk:v1", "again").stderr


def test_prune_removes_the_layer_records_of_images_that_are_gone(registry: Registry, tmp_path: Path) -> None:
    """A push notes its layer in cache/oci-layer-<id>.json (so the next push of the image
    only asks the registry); those were never removed. prune removes the records of images
    that are gone, and keeps (and a second push still uses) those of images still here."""
    db = tmp_path / "db"
    kept, gone = load(db, 0, "keep"), load(db, 1, "gone")
    add_remote(db, registry)
    miv(db, "push", "reg", "keep", "keep:v1")
    miv(db, "push", "reg", "gone", "gone:v1")
    records = {i: db / "cache" / f"oci-layer-{i}.json" for i in (kept, gone)}
    assert all(r.is_file() for r in records.values())
    miv(db, "untag", "gone")
    err = miv(db, "prune").stderr.decode()
    assert f"removed image {gone[:12]}" in err and f"leftover cache/oci-layer-{gone}.json" in err, err
    assert not records[gone].exists() and records[kept].is_file()
    assert b"already" in miv(db, "push", "reg", "keep", "keep:v2").stderr
    assert "oci-layer" not in miv(db, "prune").stderr.decode()  # nothing stale is left


def test_what_minivirt_pushes_is_a_containerdisk_skopeo_and_umoci_read(registry: Registry, tmp_path: Path) -> None:
    db = tmp_path / "db"
    image_id = load(db)
    add_remote(db, registry)
    miv(db, "push", "reg", "t", "disk:v1")
    ref = f"docker://{registry.host}/minivirt/disk:v1"
    raw = json.loads(skopeo("inspect", "--tls-verify=false", "--raw", ref).stdout)
    assert raw["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert [layer["mediaType"] for layer in raw["layers"]] == ["application/vnd.oci.image.layer.v1.tar+gzip"]
    config = json.loads(skopeo("inspect", "--tls-verify=false", "--config", ref).stdout)
    assert config["os"] == "linux" and config["architecture"] == "amd64"
    assert config["config"]["Labels"]["org.minivirt.image-id"] == image_id
    assert len(config["rootfs"]["diff_ids"]) == 1
    skopeo("copy", "--src-tls-verify=false", ref, f"oci:{tmp_path / 'layout'}:v1")
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{tmp_path / 'layout'}:v1", str(bundle)],
                   check=True, capture_output=True)
    disk = bundle / "rootfs" / "disk" / "disk.qcow2"
    assert disk.read_bytes() == (db / "images" / image_id / "disk.qcow2").read_bytes()
    listing = subprocess.run(["tar", "tzvf", "-"], capture_output=True, check=True,
                             input=_layer_bytes(tmp_path / "layout", raw["layers"][0]["digest"])).stdout.decode()
    assert "107/107" in listing and "disk/disk.qcow2" in listing


def _layer_bytes(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()


def test_remote_ls_lists_repositories_and_tags(registry: Registry, tmp_path: Path) -> None:
    db = tmp_path / "db"
    load(db)
    add_remote(db, registry)
    miv(db, "push", "reg", "t", "disk:v1")
    miv(db, "push", "reg", "t", "other")
    assert miv(db, "remote", "ls", "reg").stdout.decode().split() == ["disk:v1", "other:latest"]


@pytest.fixture(autouse=True)
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Docker config folder of the test's own (the user's is never read)."""
    folder = tmp_path / "docker-config"
    folder.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    return folder / "config.json"


def _write_docker_auth(path: Path, host: str, user: str, password: str) -> None:
    import base64

    path.write_text(json.dumps({"auths": {host: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}}}))


def _one_line_error(proc: subprocess.CompletedProcess[bytes]) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "Traceback" not in err, err
    assert PASSWORD not in err and PASSWORD not in proc.stdout.decode()
    return err


def test_token_flow_push_with_docker_config_credentials_and_anonymous_pull(
        token_registry: Registry, tmp_path: Path, docker_config: Path) -> None:
    db, empty = tmp_path / "a", tmp_path / "b"
    image_id = load(db)
    add_remote(db, token_registry)
    err = _one_line_error(miv(db, "push", "reg", "t", "disk:v1", rc=None))
    assert "requires credentials" in err and "registry login" in err
    _write_docker_auth(docker_config, token_registry.host, USER, PASSWORD)
    miv(db, "push", "reg", "t", "disk:v1")
    assert token_registry.tokens is not None
    assert (USER, ["repository:minivirt/disk:pull,push"]) in token_registry.tokens.asked
    docker_config.unlink()
    asked = len(token_registry.tokens.asked)
    add_remote(empty, token_registry)
    assert miv(empty, "pull", "reg", "disk:v1").stdout.decode().strip() == image_id[:12]
    assert all(user is None for user, _ in token_registry.tokens.asked[asked:])
    assert any("repository:minivirt/disk:pull" in scopes for _, scopes in token_registry.tokens.asked[asked:])


def test_registry_login_stores_credentials_0600_never_printed_and_basic_auth_pushes(
        htpasswd_registry: Registry, tmp_path: Path) -> None:
    db = tmp_path / "db"
    load(db)
    add_remote(db, htpasswd_registry)
    err = _one_line_error(miv(db, "push", "reg", "t", "disk:v1", rc=None))
    assert "requires credentials" in err
    err = _one_line_error(miv(db, "registry", "login", htpasswd_registry.host, "--insecure", "-u", USER,
                              "--password-stdin", input=b"wrong-password\n", rc=None))
    assert "refused the credentials" in err
    assert not (db / "registry-auth.json").exists()
    out = miv(db, "registry", "login", htpasswd_registry.host, "--insecure", "-u", USER, "--password-stdin",
              input=f"{PASSWORD}\n".encode())
    assert PASSWORD not in (out.stdout + out.stderr).decode()
    auth_file = db / "registry-auth.json"
    assert stat.S_IMODE(auth_file.stat().st_mode) == 0o600
    miv(db, "push", "reg", "t", "disk:v1")
    out = miv(db, "remote", "list")
    assert PASSWORD not in (out.stdout + out.stderr).decode()
    miv(db, "registry", "logout", htpasswd_registry.host)
    assert "requires credentials" in _one_line_error(miv(db, "push", "reg", "t", "disk:v2", rc=None))


def test_push_with_basic_credentials_from_docker_config(htpasswd_registry: Registry, tmp_path: Path,
                                                        docker_config: Path) -> None:
    db = tmp_path / "db"
    load(db)
    add_remote(db, htpasswd_registry)
    _write_docker_auth(docker_config, htpasswd_registry.host, USER, "not-the-password")
    err = _one_line_error(miv(db, "push", "reg", "t", "disk:v1", rc=None))
    assert "refused the credentials" in err
    _write_docker_auth(docker_config, htpasswd_registry.host, USER, PASSWORD)
    miv(db, "push", "reg", "t", "disk:v1")


def test_oci_remote_urls_are_checked(tmp_path: Path) -> None:
    db = tmp_path / "db"
    for url, words in (("oci://quay.io/Upper/Case", "not a registry namespace"),
                       ("oci://user:secret@quay.io/x", "holds credentials"),
                       ("oci:///nohost", "must name the registry")):
        err = _one_line_error(miv(db, "remote", "add", "r", url, rc=None))
        assert words in err and "secret" not in err
    assert "--insecure is for oci://" in _one_line_error(
        miv(db, "remote", "add", "r", "https://h/b", "--insecure", rc=None))
    miv(db, "remote", "add", "q", "oci://Quay.IO/containerdisks")
    miv(db, "remote", "add", "l", "oci://localhost:5000", "--insecure")
    listed = {r["name"]: r for r in json.loads(miv(db, "remote", "list", "--json").stdout)}
    assert listed["q"] == {"name": "q", "url": "oci://quay.io/containerdisks", "kind": "oci"}
    assert listed["l"]["url"] == "oci+http://localhost:5000" and listed["l"]["kind"] == "oci"
    assert "invalid registry tag" in _one_line_error(miv(db, "pull", "q", "fedora:-bad", rc=None))


def test_missing_repository_and_unreachable_registry_are_clear_errors(registry: Registry, tmp_path: Path) -> None:
    from .registry import free_port

    db = tmp_path / "db"
    add_remote(db, registry)
    err = _one_line_error(miv(db, "pull", "reg", "nothere:v1", rc=None))
    assert "not found" in err and "minivirt/nothere:v1" in err
    miv(db, "remote", "add", "gone", f"oci://127.0.0.1:{free_port()}/x", "--insecure")
    err = _one_line_error(miv(db, "pull", "gone", "a", rc=None))
    assert "cannot reach registry" in err
    assert db_entries(db)["staging"] == [] and db_entries(db)["images"] == []


def _standard_containerdisk(tmp_path: Path, registry: Registry, disk: Path, name: str, repository: str) -> None:
    """A containerDisk made by the standard tools: GNU tar makes the layer (``disk/<name>``
    owned by 107:107), umoci puts it in an OCI layout, skopeo copies that to the registry.
    (``umoci insert`` is not used: the Debian build's layers lack the tar's end.)"""
    work = tmp_path / f"std-{repository.replace('/', '-')}"
    (work / "root" / "disk").mkdir(parents=True)
    (work / "root" / "disk" / name).write_bytes(disk.read_bytes())
    subprocess.run(["tar", "--owner=107", "--group=107", "-C", str(work / "root"), "-cf", str(work / "layer.tar"),
                    "disk"], check=True)
    layout = work / "layout"
    for args in (["init", "--layout", str(layout)], ["new", "--image", f"{layout}:v1"],
                 ["raw", "add-layer", "--image", f"{layout}:v1", str(work / "layer.tar")]):
        subprocess.run(["umoci", *args], check=True, capture_output=True)
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", f"docker://{registry.host}/{repository}:v1")


def test_containerdisks_made_by_standard_tools_are_pulled_qcow2_and_raw(registry: Registry, tmp_path: Path) -> None:
    from minivirt_core import qcow2

    db = tmp_path / "db"
    files = image_files(3)
    qcow = tmp_path / "disk.qcow2"
    qcow.write_bytes(files["disk.qcow2"])
    _standard_containerdisk(tmp_path, registry, qcow, "disk.qcow2", "minivirt/std")
    raw = tmp_path / "disk.img"
    with open(raw, "wb") as f:
        f.write(b"raw disk bytes" * 1000)
        f.truncate(4 << 20)
    _standard_containerdisk(tmp_path, registry, raw, "disk.img", "minivirt/rawdisk")
    add_remote(db, registry)
    miv(db, "pull", "reg", "std:v1", "std")
    pulled = db / "images" / "std" / "disk.qcow2"
    assert pulled.read_bytes() == files["disk.qcow2"]
    miv(db, "pull", "reg", "rawdisk:v1", "raw")
    converted = db / "images" / "raw" / "disk.qcow2"
    assert qcow2.read_header(converted) is not None
    back = tmp_path / "back.raw"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(converted), str(back)], check=True)
    assert back.read_bytes() == raw.read_bytes()
    assert miv(db, "fsck").returncode == 0


@pytest.mark.vm
def test_tiny_round_trip_through_a_registry_boots(registry: Registry, tiny_db: Path, tmp_path: Path,
                                                  tiny_image: object) -> None:
    empty = tmp_path / "empty"
    add_remote(tiny_db, registry)
    miv(tiny_db, "push", "reg", "tiny", "tiny:v1")
    add_remote(empty, registry)
    out = miv(empty, "pull", "reg", "tiny:v1", "back")
    assert out.stdout.decode().strip() == tiny_image.id[:12]  # type: ignore[attr-defined]
    assert miv(empty, "run", "back", "-m", "200", "hostname").stdout == b"tiny\n"


@pytest.mark.vm
def test_tiny_as_a_standard_containerdisk_boots(registry: Registry, tiny_db: Path, tmp_path: Path,
                                                tiny_image: object) -> None:
    _standard_containerdisk(tmp_path, registry, tiny_image.path / "disk.qcow2",  # type: ignore[attr-defined]
                            "disk.qcow2", "minivirt/tinystd")
    empty = tmp_path / "empty"
    add_remote(empty, registry)
    miv(empty, "pull", "reg", "tinystd:v1", "std")
    assert miv(empty, "run", "std", "-m", "200", "hostname").stdout == b"tiny\n"


# Hostile registry content ----------------------------------------------------------


def _upload(registry: Registry, repository: str, data: bytes) -> str:
    """Put a blob into the registry (monolithic upload); its digest."""
    import hashlib
    import urllib.request

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = urllib.request.urlopen(urllib.request.Request(
        f"http://{registry.host}/v2/{repository}/blobs/uploads/", data=b"", method="POST"))
    location = start.headers["Location"]
    sep = "&" if "?" in location else "?"
    url = location if location.startswith("http") else f"http://{registry.host}{location}"
    urllib.request.urlopen(urllib.request.Request(f"{url}{sep}digest={digest}", data=data, method="PUT",
                                                  headers={"Content-Type": "application/octet-stream"}))
    return digest


def put_image(registry: Registry, repository: str, tag: str, layer: bytes,
              layer_media: str = "application/vnd.oci.image.layer.v1.tar+gzip", size: int | None = None) -> str:
    """A one-layer image made by hand (the layer as given); the layer's digest."""
    import urllib.request

    layer_digest = _upload(registry, repository, layer)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}).encode()
    config_digest = _upload(registry, repository, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                   "size": len(config)},
        "layers": [{"mediaType": layer_media, "digest": layer_digest, "size": len(layer) if size is None else size}],
    }).encode()
    urllib.request.urlopen(urllib.request.Request(
        f"http://{registry.host}/v2/{repository}/manifests/{tag}", data=manifest, method="PUT",
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}))
    return layer_digest


def _layer(members: list[tuple[object, bytes | None]]) -> bytes:
    import gzip

    from .helpers import tar_bytes

    return gzip.compress(tar_bytes(members))  # type: ignore[arg-type]


def _member(name: str, data: bytes = b"", kind: bytes = b"0", link: str = "") -> tuple[object, bytes | None]:
    import tarfile

    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data if kind == tarfile.REGTYPE else None


def _assert_refused_and_nothing_left(db: Path, remote_tag: str, words: str) -> None:
    err = _one_line_error(miv(db, "pull", "reg", remote_tag, rc=None))
    assert words in err, err
    entries = db_entries(db)
    assert entries["images"] == [] and entries["staging"] == []
    assert not list((db / "cache").glob("*.part")) if (db / "cache").exists() else True
    assert miv(db, "fsck").returncode == 0


def test_a_blob_whose_digest_does_not_match_is_refused(registry: Registry, tmp_path: Path) -> None:
    """The registry serves what it stores: a byte changed on its disk inside the qcow2's
    data (an ORAS-style layer: no gzip or tar checksum to notice) is caught by the digest."""
    db = tmp_path / "db"
    disk = image_files(2)["disk.qcow2"]
    digest = put_image(registry, "minivirt/flipped", "v1", disk, layer_media="application/vnd.minivirt.disk.qcow2")
    layer = digest.split(":")[1]
    data = registry.storage / "docker/registry/v2/blobs/sha256" / layer[:2] / layer / "data"
    body = bytearray(data.read_bytes())
    body[len(body) // 2] ^= 0xFF  # same size, other bytes
    data.write_bytes(bytes(body))
    add_remote(db, registry)
    _assert_refused_and_nothing_left(db, "flipped:v1", "digest")


@pytest.mark.parametrize(("members", "words"), [
    ([("disk/", b"", b"5", ""), ("disk/../../evil", b"x" * 10, b"0", "")], "'..'"),
    ([("disk/", b"", b"5", ""), ("disk/disk.qcow2", b"", b"2", "/etc/shadow")], "symbolic link"),
    ([("disk/", b"", b"5", ""), ("disk/disk.qcow2", b"", b"1", "/etc/shadow")], "hard link"),
    ([("etc/passwd", b"root::0:0::/:/bin/sh\n", b"0", "")], "only one file under disk/"),
])
def test_a_layer_with_dotdot_a_link_or_other_files_is_refused(
        registry: Registry, tmp_path: Path, members: list[tuple[str, bytes, bytes, str]], words: str) -> None:
    db = tmp_path / "db"
    put_image(registry, "minivirt/bad", "v1", _layer([_member(n, d, k, ln) for n, d, k, ln in members]))
    add_remote(db, registry)
    _assert_refused_and_nothing_left(db, "bad:v1", words)


def test_a_qcow2_with_a_backing_file_is_refused(registry: Registry, tmp_path: Path) -> None:
    from .helpers import qcow2_bytes

    db = tmp_path / "db"
    disk = qcow2_bytes(tmp_path, backing="/etc/shadow")
    put_image(registry, "minivirt/backed", "v1",
              _layer([_member("disk/", kind=b"5"), _member("disk/disk.qcow2", disk)]))
    put_image(registry, "minivirt/orasbacked", "v1", disk, layer_media="application/vnd.minivirt.disk.qcow2")
    add_remote(db, registry)
    _assert_refused_and_nothing_left(db, "backed:v1", "backing file")
    _assert_refused_and_nothing_left(db, "orasbacked:v1", "backing file")


@pytest.mark.parametrize("media", ["application/vnd.oci.image.layer.v1.tar",  # `oras push`'s default
                                   "application/vnd.minivirt.disk.qcow2"])
def test_an_oras_style_qcow2_layer_is_pulled(registry: Registry, tmp_path: Path, media: str) -> None:
    db = tmp_path / "db"
    disk = image_files(2)["disk.qcow2"]
    put_image(registry, "minivirt/oras", "v1", disk, layer_media=media)
    add_remote(db, registry)
    miv(db, "pull", "reg", "oras:v1", "o")
    assert (db / "images" / "o" / "disk.qcow2").read_bytes() == disk


def test_a_manifest_claiming_a_huge_size_is_refused_before_downloading(registry: Registry, tmp_path: Path) -> None:
    db = tmp_path / "db"
    put_image(registry, "minivirt/huge", "v1", _layer([_member("disk/disk.qcow2", image_files(0)["disk.qcow2"])]),
              size=1 << 60)
    add_remote(db, registry)
    _assert_refused_and_nothing_left(db, "huge:v1", "more than the")


def test_a_blob_longer_than_declared_is_cut_off(registry: Registry, tmp_path: Path) -> None:
    """An endless blob, as a real registry can serve one: more bytes than the manifest
    declares; the pull stops at the declared size."""
    db = tmp_path / "db"
    layer = _layer([_member("disk/disk.qcow2", image_files(0)["disk.qcow2"])]) + os.urandom(4 << 20)
    put_image(registry, "minivirt/long", "v1", layer, size=1000)
    add_remote(db, registry)
    _assert_refused_and_nothing_left(db, "long:v1", "more than the 1000 bytes")


def test_two_architectures_under_one_tag_make_an_index_and_pull_picks_the_hosts(
        registry: Registry, tmp_path: Path) -> None:
    db, empty = tmp_path / "a", tmp_path / "b"
    arm = load(db, 1, "arm", {"disk": True, "arch": "aarch64"})
    x86 = load(db, 2, "x86", {"disk": True, "arch": "x86_64"})
    add_remote(db, registry)
    miv(db, "push", "reg", "arm", "multi:v1")
    miv(db, "push", "reg", "x86", "multi:v1")
    raw = json.loads(skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{registry.host}/minivirt/multi:v1").stdout)
    assert raw["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert sorted(m["platform"]["architecture"] for m in raw["manifests"]) == ["amd64", "arm64"]
    miv(db, "push", "reg", "x86", "multi:v1")  # again: the index keeps one entry per architecture
    raw = json.loads(skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{registry.host}/minivirt/multi:v1").stdout)
    assert len(raw["manifests"]) == 2
    add_remote(empty, registry)
    assert miv(empty, "pull", "reg", "multi:v1", "host").stdout.decode().strip() == x86[:12]
    assert miv(empty, "pull", "reg", "multi:v1", "other", "--arch", "aarch64").stdout.decode().strip() == arm[:12]
    assert json.loads((empty / "images" / "other" / "config.json").read_text())["arch"] == "aarch64"


def test_an_interrupted_pull_resumes_the_blob_with_range(registry: Registry, tmp_path: Path) -> None:
    """Kill a pull mid-blob, then change the bytes it already has on the registry's disk:
    only a pull that asks for the rest (Range) and replays its .part ends with the right
    digest; one that started over would read the changed bytes and be refused."""
    import signal

    from .helpers import MIV, qcow2_of, wait_until

    db = tmp_path / "db"
    disk = qcow2_of(os.urandom(48 << 20), 48 << 20)
    digest = put_image(registry, "minivirt/big", "v1", disk, layer_media="application/vnd.minivirt.disk.qcow2")
    add_remote(db, registry)
    part = db / "cache" / f"pull-oci-{digest.split(':')[1]}.part"
    proc = subprocess.Popen([MIV, "pull", "reg", "big:v1", "big"], env={**os.environ, "MINIVIRT_DB_PATH": str(db)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: part.exists() and part.stat().st_size >= 1 << 20, 60, "the pull to download 1 MiB",
                   poll=0.002)
        os.kill(proc.pid, signal.SIGSTOP)
    finally:
        proc.kill()
        proc.wait()
    have = part.stat().st_size
    assert 1 << 20 <= have < len(disk), "the pull was not interrupted mid-blob"
    blob = registry.storage / "docker/registry/v2/blobs/sha256" / digest[7:9] / digest[7:] / "data"
    body = bytearray(blob.read_bytes())
    body[have // 2] ^= 0xFF
    blob.write_bytes(bytes(body))
    miv(db, "pull", "reg", "big:v1", "big")
    assert (db / "images" / "big" / "disk.qcow2").read_bytes() == disk
    assert not part.exists()
    miv(db, "prune")  # the killed pull's staging folder (unlocked since it died)
    assert db_entries(db)["staging"] == []


def test_a_manifest_that_does_not_match_its_digest_is_refused(registry: Registry, tmp_path: Path) -> None:
    """The manifest a tag names, changed on the registry's disk: the registry still states
    the digest it was stored under; the pull checks the bytes against it."""
    src, db = tmp_path / "src", tmp_path / "db"
    load(src)
    add_remote(src, registry)
    miv(src, "push", "reg", "t", "disk:v1")
    link = registry.storage / "docker/registry/v2/repositories/minivirt/disk/_manifests/tags/v1/current/link"
    digest = link.read_text().split(":")[1]
    data = registry.storage / "docker/registry/v2/blobs/sha256" / digest[:2] / digest / "data"
    body = data.read_bytes()
    assert b'"schemaVersion": 2' in body
    data.write_bytes(body.replace(b'"schemaVersion": 2', b'"schemaVersion":  2'))  # same meaning, other bytes
    add_remote(db, registry)
    _assert_refused_and_nothing_left(db, "disk:v1", "does not match its digest")


def test_a_push_cancelled_after_its_layer_is_there_stops_at_once_and_writes_no_tag(
        registry: Registry, tmp_path: Path) -> None:
    """With the blobs on the registry already, a push only checks them and writes the
    manifest: nothing reports progress, so only the cancel itself can stop it. Cancelled
    while the registry does not answer, the push's thread ends before the cancel returns,
    and the tag never appears once the registry answers again."""
    import asyncio
    import signal

    from minivirt_core.api import Minivirt

    from .helpers import running_in_some_thread, wait_until

    db = tmp_path / "db"
    load(db)
    add_remote(db, registry)
    miv(db, "push", "reg", "t", "disk:v1")

    async def cancel_while_waiting() -> None:
        task = asyncio.ensure_future(Minivirt(db).remotes.push("reg", "t", "disk:late"))
        await asyncio.to_thread(wait_until, lambda: running_in_some_thread("_exchange"), 30, "the push's request")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
        assert not running_in_some_thread("_push")

    registry._proc.send_signal(signal.SIGSTOP)
    try:
        asyncio.run(cancel_while_waiting())
    finally:
        registry._proc.send_signal(signal.SIGCONT)
    assert miv(db, "remote", "ls", "reg").stdout.decode().split() == ["disk:v1"]
