"""`miv inspect` and minivirt_core.inspect: everything about one VM or one image."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from minivirt_core import Database
from minivirt_core.inspect import inspect_image, inspect_vm

from .helpers import image_tar, miv


def _load(db: Path, n: int, *tags: str) -> str:
    return miv(db, "load", *tags, input=image_tar(n)).stdout.decode().strip()


def test_inspect_image_reports_id_tags_size_config_and_the_vms_using_it(db: Path) -> None:
    short = _load(db, 0, "base", "base-2")
    miv(db, "create", "base", "web", "-m", "64")
    info = asyncio.run(inspect_image(Database(db), "base-2"))
    assert info["kind"] == "image"
    assert info["short_id"] == short and info["id"].startswith(short) and len(info["id"]) == 64
    assert info["tags"] == ["base", "base-2"]
    assert info["size"] > 0
    assert info["config"] == {"disk": True, "iso": None, "arch": None}
    assert info["arch"] in ("x86_64", "aarch64")
    assert info["created"] > 0 and info["created_iso"].endswith("Z")
    assert info["vms"] == ["web"]
    json.dumps(info)  # JSON-ready


def test_inspect_vm_of_a_stopped_vm_reports_config_image_disk_and_logs(db: Path) -> None:
    _load(db, 0, "base")
    miv(db, "create", "base", "web", "-m", "64", "--port", "18022:22")
    info = asyncio.run(inspect_vm(Database(db), "web"))
    assert info["kind"] == "vm" and info["name"] == "web" and info["state"] == "stopped"
    assert info["image"]["reference"] == "base" and info["image"]["label"] == "base"
    assert info["image"]["moved"] is False and info["image"]["tags"] == ["base"]
    assert info["ports"] == [{"host_port": 18022, "guest_port": 22}]
    assert info["memory"] == 64 and info["config"]["image_ref"] == "base"
    assert info["disk"]["virtual_size"] == 1 << 20 and info["disk"]["overlay_size"] > 0
    assert info["logs"]["serial"].endswith("/vms/web/serial.log")
    assert info["ssh_command"] == "miv ssh web"
    assert info["pid"] is None and info["command_line"] is None
    json.dumps(info)


def test_inspect_vm_says_when_the_tag_it_was_created_from_has_moved(db: Path) -> None:
    _load(db, 0, "base")
    miv(db, "create", "base", "web", "-m", "64")
    first = asyncio.run(inspect_vm(Database(db), "web"))["image"]["id"]
    _load(db, 1, "base")  # the tag moves to another image
    image = asyncio.run(inspect_vm(Database(db), "web"))["image"]
    assert image["id"] == first and image["reference"] == "base" and image["moved"] is True
    assert image["reference_now"] != first and image["label"] == f"base@{first[:12]}"


def test_inspect_of_a_missing_vm_is_not_found(db: Path) -> None:
    from minivirt_core.errors import NotFound

    Database(db).ensure()
    with pytest.raises(NotFound):
        asyncio.run(inspect_vm(Database(db), "nope"))
    with pytest.raises(NotFound):
        asyncio.run(inspect_image(Database(db), "nope"))


def test_miv_inspect_json_of_an_image_names_the_vms_using_it(db: Path) -> None:
    short = _load(db, 0, "base")
    miv(db, "create", "base", "web", "-m", "64")
    data = json.loads(miv(db, "inspect", short, "--json").stdout)
    assert data["kind"] == "image" and data["short_id"] == short and data["vms"] == ["web"]
    assert data["tags"] == ["base"] and data["config"]["disk"] is True
    text = miv(db, "inspect", "base").stdout.decode()
    assert re.search(rf"^short_id: +{short}$", text, re.M) and re.search(r"^vms: +web$", text, re.M)
    assert re.search(r"^size: +\d+K$", text, re.M) and re.search(r"^created: +20\d\d-", text, re.M)


def test_miv_inspect_of_a_name_that_is_a_vm_and_an_image_needs_type(db: Path) -> None:
    _load(db, 0, "web")
    miv(db, "create", "web", "web", "-m", "64")
    lines = miv(db, "inspect", "web", rc=1).stderr.decode().splitlines()
    assert lines == ["error: 'web' names both a VM and an image",
                     "Say which: `miv inspect --type vm web` or `miv inspect --type image web`."]
    assert json.loads(miv(db, "inspect", "--type", "vm", "web", "--json").stdout)["kind"] == "vm"
    assert json.loads(miv(db, "inspect", "--type", "image", "web", "--json").stdout)["kind"] == "image"
    miv(db, "create", "web", "only-vm", "-m", "64")
    assert json.loads(miv(db, "inspect", "only-vm", "--json").stdout)["kind"] == "vm"  # no doubt: no --type


def test_miv_inspect_of_nothing_is_a_clear_error(db: Path) -> None:
    lines = miv(db, "inspect", "nothing", rc=1).stderr.decode().splitlines()
    assert lines[0] == "error: no VM or image named 'nothing'" and len(lines) == 2


def test_inspect_vm_lists_its_snapshots(db: Path) -> None:
    _load(db, 0, "base")
    miv(db, "create", "base", "web", "-m", "64")
    assert asyncio.run(inspect_vm(Database(db), "web"))["snapshots"] == []
    miv(db, "snapshot", "save", "web", "clean")  # stopped: a disk-only snapshot, no VM boots
    (snap,) = asyncio.run(inspect_vm(Database(db), "web"))["snapshots"]
    assert snap["name"] == "clean" and snap["memory"] is False and snap["created_iso"].endswith("Z")
    assert b"clean" in miv(db, "inspect", "web").stdout
