"""Hostile and broken archives are refused with a clear message, and leave nothing behind."""

from __future__ import annotations

import gzip
import tarfile
from pathlib import Path

import pytest

from .helpers import db_entries, file_member, miv, qcow2_bytes, simple_tar, tar_bytes


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


HOSTILE = {
    "absolute path": ([file_member("/etc/evil", b"x")], "has an absolute path"),
    "dot-dot": ([file_member("../evil", b"x")], "has '..' in its path"),
    "nested dot-dot": ([file_member("a/../../evil", b"x")], "has '..' in its path"),
    "folder path": ([file_member("sub/file", b"x")], "is inside a folder"),
    "symlink": ([_special("link", tarfile.SYMTYPE, "/etc/passwd")], "is a symbolic link"),
    "hard link": ([file_member("a", b"x"), _special("b", tarfile.LNKTYPE, "a")], "is a hard link"),
    "char device": ([_special("null", tarfile.CHRTYPE)], "is a character device"),
    "block device": ([_special("sda", tarfile.BLKTYPE)], "is a block device"),
    "fifo": ([_special("pipe", tarfile.FIFOTYPE)], "is a FIFO"),
    "folder": ([_special("dir", tarfile.DIRTYPE)], "is a folder"),
    "duplicate": ([file_member("a", b"1"), file_member("a", b"2")], "has the member 'a' twice"),
    "hidden name": ([file_member(".hidden", b"1")], "has a name an image may not use"),
    "bad config": ([file_member("config.json", b"[1, 2")], "config.json is not valid JSON"),
    "config not object": ([file_member("config.json", b"[1, 2]")], "config.json is not a JSON object"),
}


def _assert_nothing_left(db: Path) -> None:
    entries = db_entries(db)
    assert entries["images"] == [], entries
    assert entries["staging"] == [], entries


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_member_is_refused(db: Path, case: str) -> None:
    members, message = HOSTILE[case]
    proc = miv(db, "load", "evil", input=tar_bytes(members), rc=1)
    assert message in proc.stderr.decode()
    assert b"Traceback" not in proc.stderr
    _assert_nothing_left(db)


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_pax_and_ustar_paths_are_checked_too(db: Path, fmt: int) -> None:
    proc = miv(db, "load", "evil", input=tar_bytes([file_member("../" + "x" * 90, b"x")], fmt=fmt), rc=1)
    assert b"'..'" in proc.stderr
    _assert_nothing_left(db)


def test_pax_long_names_are_read_for_real(db: Path) -> None:
    name = "n" * 150
    miv(db, "load", "long", input=tar_bytes([file_member(name, b"x")], fmt=tarfile.PAX_FORMAT))
    images = [p for p in (db / "images").iterdir() if not p.is_symlink()]
    assert [p.name for p in images[0].iterdir()] == [name]


def test_truncated_tar(db: Path) -> None:
    data = simple_tar({"disk.qcow2": b"x" * 100000})
    proc = miv(db, "load", "cut", input=data[:50000], rc=1)
    assert b"truncated" in proc.stderr
    _assert_nothing_left(db)


def test_tar_without_end_marker_is_truncated(db: Path) -> None:
    data = simple_tar({"a": b"x" * 512})
    proc = miv(db, "load", "cut", input=data[:1024], rc=1)
    assert b"truncated" in proc.stderr
    _assert_nothing_left(db)


def test_truncated_gzip(db: Path) -> None:
    data = gzip.compress(simple_tar({"disk.qcow2": bytes(range(256)) * 4000}))
    proc = miv(db, "load", "cut", input=data[: len(data) // 2], rc=1)
    assert b"gzip stream ends early" in proc.stderr
    _assert_nothing_left(db)


def test_corrupt_gzip(db: Path) -> None:
    data = bytearray(gzip.compress(simple_tar({"a": bytes(range(256)) * 100})))
    data[20:40] = b"\xff" * 20
    proc = miv(db, "load", "bad", input=bytes(data), rc=1)
    assert b"not valid gzip" in proc.stderr or b"not a valid tar" in proc.stderr
    _assert_nothing_left(db)


def test_not_a_tar(db: Path) -> None:
    proc = miv(db, "load", "junk", input=b"hello world " * 100, rc=1)
    assert b"not a valid tar archive" in proc.stderr
    _assert_nothing_left(db)


def test_empty_input(db: Path) -> None:
    proc = miv(db, "load", "nothing", input=b"", rc=1)
    assert b"empty" in proc.stderr
    _assert_nothing_left(db)


def test_qcow2_with_backing_file_is_refused(db: Path, tmp_path: Path) -> None:
    evil = qcow2_bytes(tmp_path, backing="/etc/shadow")
    proc = miv(db, "load", "evil", input=simple_tar({"config.json": b"{}", "disk.qcow2": evil}), rc=1)
    assert b"names a backing file" in proc.stderr
    _assert_nothing_left(db)


def test_qcow2_with_external_data_file_is_refused(db: Path, tmp_path: Path) -> None:
    (tmp_path / "data.raw").write_bytes(b"")
    evil = qcow2_bytes(tmp_path, data_file=str(tmp_path / "data.raw"))
    proc = miv(db, "load", "evil", input=simple_tar({"disk.qcow2": evil}), rc=1)
    assert b"external data file" in proc.stderr
    _assert_nothing_left(db)


def test_backing_file_under_another_name_is_refused(db: Path, tmp_path: Path) -> None:
    evil = qcow2_bytes(tmp_path, backing="/dev/sda")
    proc = miv(db, "load", "evil", input=simple_tar({"innocent.img": evil}), rc=1)
    assert b"names a backing file" in proc.stderr
    _assert_nothing_left(db)


@pytest.mark.parametrize("tag,message", [
    ("", "the name is empty"),
    ("a/b", "may not contain '/'"),
    (".hidden", "may not start with '.'"),
    ("a" * 64, "reserved for image ids"),
    ("tab\there", "printable characters"),
])
def test_invalid_tag_names(db: Path, tag: str, message: str) -> None:
    proc = miv(db, "load", tag, input=simple_tar({"a": b"1"}), rc=1)
    assert message in proc.stderr.decode()
    _assert_nothing_left(db)
    miv(db, "load", "good", input=simple_tar({"a": b"1"}))
    proc = miv(db, "tag", "good", tag, rc=1)
    assert message in proc.stderr.decode()


def test_database_path_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("not a folder")
    proc = miv(path, "images", rc=1)
    assert b"is not a folder" in proc.stderr


def test_missing_database_is_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "db"
    miv(path, "load", "t", input=simple_tar({"a": b"1"}))
    assert (path / "images" / "t").is_symlink()


@pytest.mark.parametrize("parent_mode", [0o755, 0o700], ids=["db-closed", "parent-closed"])
def test_unreadable_database_is_a_clear_error(tmp_path: Path, parent_mode: int) -> None:
    """Regression: a database under a folder we may not enter gave a PermissionError traceback."""
    import os
    import shutil
    import subprocess

    from .helpers import MIV

    path = tmp_path / "db"
    (path / "images").mkdir(parents=True)
    os.chmod(path, 0o700)
    os.chmod(tmp_path, parent_mode)
    setpriv = shutil.which("setpriv")
    if os.geteuid() == 0:
        if setpriv is None:
            pytest.skip("needs setpriv to drop root")
        prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    else:
        prefix = []
    proc = subprocess.run([*prefix, MIV, "images"], capture_output=True, timeout=60,
                          env={**os.environ, "MINIVIRT_DB_PATH": str(path), "HOME": str(tmp_path)})
    assert proc.returncode == 1, proc.stderr
    assert b"Traceback" not in proc.stderr
    assert b"not readable and writable" in proc.stderr or b"cannot create the database" in proc.stderr
