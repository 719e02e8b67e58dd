"""An image keeps the time it was made, not the time it arrived: the newest member time of
its archive travels with it through save/load and push/pull (file:// and HTTP), and its id
does not change (issue 10: `miv images --json` gains `created`)."""

from __future__ import annotations

import gzip
import json
import tarfile
import time
from pathlib import Path

import pytest

from .helpers import image_files, image_id_of, miv, put_on_remote, tar_bytes
from .httpserver import StaticServer

MADE = 1700000000  # 2023-11-14T22:13:20Z


def _tar(files: dict[str, bytes], mtime: float) -> bytes:
    members = []
    for name, data in files.items():
        info = tarfile.TarInfo(name)
        info.mode, info.mtime = 0o644, mtime
        members.append((info, data))
    return tar_bytes(members)


def _created(db: Path) -> dict[str, float]:
    return {i["id"]: i["created"] for i in json.loads(miv(db, "images", "--json").stdout)}


@pytest.mark.parametrize("kind", ["file", "http"])
def test_a_pulled_image_keeps_the_time_it_was_made(db: Path, tmp_path: Path, kind: str) -> None:
    files = image_files(3)
    image_id = image_id_of(files)
    server = StaticServer(tmp_path / "www").start() if kind == "http" else None
    try:
        url = put_on_remote(kind, tmp_path, server, image_id, gzip.compress(_tar(files, MADE)), "old")
        miv(db, "remote", "add", "r", url)
        miv(db, "pull", "r", "old")
    finally:
        if server:
            server.stop()
    assert _created(db) == {image_id: MADE}  # the same id, and the time it was made
    assert "years ago" in miv(db, "images").stdout.decode()
    assert json.loads(miv(db, "inspect", "old", "--json").stdout)["created_iso"] == "2023-11-14T22:13:20Z"


def test_the_time_travels_through_save_load_push_and_pull(db: Path, tmp_path: Path) -> None:
    files = image_files(4)
    image_id = image_id_of(files)
    miv(db, "load", "old", input=_tar(files, MADE))
    assert _created(db) == {image_id: MADE}
    # save, then load into another database
    other = tmp_path / "other"
    miv(other, "load", "again", input=miv(db, "save", "old").stdout)
    assert _created(other) == {image_id: MADE}
    # push to a file:// remote, pull into a third
    (tmp_path / "repo").mkdir()
    miv(db, "remote", "add", "r", f"file://{tmp_path}/repo")
    miv(db, "push", "r", "old", "old")
    third = tmp_path / "third"
    miv(third, "remote", "add", "r", f"file://{tmp_path}/repo")
    miv(third, "pull", "r", "old")
    assert _created(third) == {image_id: MADE}


def test_an_archive_without_member_times_gets_the_time_it_arrived(db: Path) -> None:
    before = time.time()
    files = image_files(5)
    miv(db, "load", "repro", input=_tar(files, 0))  # reproducible archives write 0
    created = _created(db)[image_id_of(files)]
    assert before - 2 <= created <= time.time() + 1
    future = image_files(6)
    miv(db, "load", "future", input=_tar(future, time.time() + 10 * 86400))  # a clock that is wrong: ignored
    assert _created(db)[image_id_of(future)] <= time.time() + 1
