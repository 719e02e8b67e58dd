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
