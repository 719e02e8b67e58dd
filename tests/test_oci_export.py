"""`miv export kubevirt`: the VirtualMachine it prints validates against KubeVirt's own
schema (tests/data/kubevirt-virtualmachine.schema.json, a copy of the shared reference)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from .helpers import ROOT, image_files, miv, simple_tar

SCHEMA = json.loads((ROOT / "tests" / "data" / "kubevirt-virtualmachine.schema.json").read_text())


def validate(document: dict[str, object]) -> None:
    schema = {"$ref": "#/definitions/v1.VirtualMachine", "definitions": SCHEMA["definitions"]}
    jsonschema.Draft4Validator(schema).validate(document)


def test_schema_check_catches_a_wrong_manifest() -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
                  "spec": {"template": {"spec": {"domain": {"cpu": {"cores": "two"}, "devices": {}}}}}})


def test_export_of_a_vm_with_memory_cpus_ports_and_cloud_init_validates(db: Path, tmp_path: Path) -> None:
    miv(db, "load", "img", input=simple_tar(image_files()))
    miv(db, "create", "img", "web", "-m", "300", "--cpus", "2", "--port", "18080:80", "--port", "18443:443")
    user_data = tmp_path / "user-data"
    user_data.write_text("#cloud-config\nhostname: web\n")
    out = miv(db, "export", "kubevirt", "web", "--image", "registry.example/me/img:v1",
              "--user-data", str(user_data)).stdout.decode()
    vm, svc = list(yaml.safe_load_all(out))
    validate(vm)
    spec = vm["spec"]["template"]["spec"]
    assert spec["domain"]["cpu"]["cores"] == 2 and spec["domain"]["memory"]["guest"] == "300Mi"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["containerdisk"]["containerDisk"]["image"] == "registry.example/me/img:v1"
    assert volumes["cloudinitdisk"]["cloudInitNoCloud"]["userData"] == "#cloud-config\nhostname: web\n"
    assert {d["name"] for d in spec["domain"]["devices"]["disks"]} == set(volumes)
    assert svc["kind"] == "Service" and [p["port"] for p in svc["spec"]["ports"]] == [80, 443]
    assert svc["spec"]["selector"] == vm["spec"]["template"]["metadata"]["labels"]


def test_export_of_an_image_validates_and_a_bad_reference_is_a_clear_error(db: Path) -> None:
    miv(db, "load", "My_Image", input=simple_tar(image_files()))
    docs = list(yaml.safe_load_all(miv(db, "export", "kubevirt", "My_Image", "--image", "ghcr.io/me/x:v1").stdout))
    assert len(docs) == 1
    validate(docs[0])
    assert docs[0]["metadata"]["name"] == "my-image"
    proc = miv(db, "export", "kubevirt", "My_Image", "--image", "bad ref", rc=1)
    assert b"not a registry image reference" in proc.stderr and b"Traceback" not in proc.stderr
