"""Hostile and broken archives are refused with a clear message, and leave nothing behind."""

from __future__ import annotations

import gzip
import json
import os
import tarfile
from pathlib import Path

import pytest

from .helpers import (
    db_entries,
    file_member,
    image_files,
    image_tar,
    iso_bytes,
    miv,
    put_on_remote,
    qcow2_bytes,
    qcow2_of,
    simple_tar,
    tar_bytes,
)

CONFIG = file_member("config.json", b'{"disk": true}')


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
    "hard link": ([CONFIG, _special("b", tarfile.LNKTYPE, "config.json")], "is a hard link"),
    "char device": ([_special("null", tarfile.CHRTYPE)], "is a character device"),
    "block device": ([_special("sda", tarfile.BLKTYPE)], "is a block device"),
    "fifo": ([_special("pipe", tarfile.FIFOTYPE)], "is a FIFO"),
    "folder": ([_special("dir", tarfile.DIRTYPE)], "is a folder"),
    "duplicate": ([CONFIG, CONFIG], "has the member 'config.json' twice"),
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
    name = "n" * 150 + ".iso"
    files = image_files(iso=name)
    files["config.json"] = b'{"disk": true, "iso": "%s"}' % name.encode()
    miv(db, "load", "long", input=tar_bytes([file_member(n, d) for n, d in files.items()], fmt=tarfile.PAX_FORMAT))
    images = [p for p in (db / "images").iterdir() if not p.is_symlink()]
    assert sorted(p.name for p in images[0].iterdir()) == ["config.json", "disk.qcow2", name]


def test_truncated_tar(db: Path) -> None:
    data = image_tar()
    proc = miv(db, "load", "cut", input=data[:50000], rc=1)
    assert b"truncated" in proc.stderr
    _assert_nothing_left(db)


def test_tar_without_end_marker_is_truncated(db: Path) -> None:
    files = image_files()
    data = simple_tar({"disk.qcow2": files["disk.qcow2"], "config.json": files["config.json"]})
    end = len(data.rstrip(b"\0"))
    proc = miv(db, "load", "cut", input=data[: end + -end % 512], rc=1)
    assert b"truncated" in proc.stderr
    _assert_nothing_left(db)


def test_truncated_gzip(db: Path) -> None:
    data = gzip.compress(image_tar(disk=qcow2_of(os.urandom(1 << 20))))
    proc = miv(db, "load", "cut", input=data[: len(data) // 2], rc=1)
    assert b"gzip stream ends early" in proc.stderr
    _assert_nothing_left(db)


def test_corrupt_gzip(db: Path) -> None:
    data = bytearray(gzip.compress(image_tar()))
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
    proc = miv(db, "load", "evil", input=simple_tar({"config.json": b'{"disk": true}', "disk.qcow2": evil}), rc=1)
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
    proc = miv(db, "load", tag, input=image_tar(), rc=1)
    assert message in proc.stderr.decode()
    _assert_nothing_left(db)
    miv(db, "load", "good", input=image_tar())
    proc = miv(db, "tag", "good", tag, rc=1)
    assert message in proc.stderr.decode()


def test_database_path_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("not a folder")
    proc = miv(path, "images", rc=1)
    assert b"is not a folder" in proc.stderr


def test_missing_database_is_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "db"
    miv(path, "load", "t", input=image_tar())
    assert (path / "images" / "t").is_symlink()


@pytest.mark.parametrize("closed", ["db", "parent"], ids=["db-closed", "parent-closed"])
def test_unreadable_database_is_a_clear_error(tmp_path: Path, closed: str) -> None:
    """Regression: a database under a folder we may not enter gave a PermissionError traceback.
    The folder is closed to everyone (mode 0); root enters anything, so as root the command
    runs as nobody (setpriv), and as any other user it runs as that user."""
    import os
    import shutil
    import subprocess

    from .helpers import MIV

    path = tmp_path / "db"
    (path / "images").mkdir(parents=True)
    prefix = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("as root this needs setpriv, to run the command as a user the folder is closed to")
        prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    folder = path if closed == "db" else tmp_path
    os.chmod(folder, 0)
    try:
        proc = subprocess.run([*prefix, MIV, "images"], capture_output=True, timeout=60,
                              env={**os.environ, "MINIVIRT_DB_PATH": str(path), "HOME": str(tmp_path)})
    finally:
        os.chmod(folder, 0o700)
    assert proc.returncode == 1, proc.stderr
    assert b"Traceback" not in proc.stderr
    assert b"not readable and writable" in proc.stderr or b"cannot create the database" in proc.stderr


# Issue 9, point 17: `load` takes exactly what `fsck` accepts. -------------------------------

def _load_refused(db: Path, data: bytes, *messages: str) -> str:
    """Load ``data``: it must fail with one of ``messages``, leaving nothing behind."""
    proc = miv(db, "load", "evil", input=data, rc=1)
    err = proc.stderr.decode()
    assert any(m in err for m in messages), err
    assert "Traceback" not in err
    _assert_nothing_left(db)
    return err


def test_load_refuses_a_member_other_than_config_disk_and_iso(db: Path) -> None:
    _load_refused(db, simple_tar(image_files() | {"extra": b"data"}), "'extra' is not part of the image")
    # Before config.json is read, an unknown member can only be the ISO: it must be one.
    _load_refused(db, simple_tar({"extra": b"data"} | image_files()), "is refused: it is not an ISO 9660 image")
    _load_refused(db, simple_tar({"a.iso": iso_bytes(), "b.iso": iso_bytes()} | image_files()),
                  "'b.iso' is not part of an image")


@pytest.mark.parametrize("name", [
    "disk.qc\u043ew2",  # a Cyrillic o
    "config.js\u043en",
    "\uff44isk.qcow2",  # a fullwidth d
    "disk.qcow2\u200b",  # a zero-width space
    "cafe\u0301.iso",  # NFD of café.iso
    "caf\u00e9.iso",  # NFC
], ids=["cyrillic-disk", "cyrillic-config", "fullwidth", "zero-width", "nfd", "nfc"])
def test_load_refuses_lookalike_unicode_member_names(db: Path, name: str) -> None:
    files = image_files()
    unprintable = "has a name an image may not use"  # the zero-width space
    _load_refused(db, simple_tar(files | {name: iso_bytes()}), "is not part of the image", unprintable)
    _load_refused(db, simple_tar({name: iso_bytes()} | files), "is not part of an image", unprintable)


def test_load_refuses_an_iso_declared_with_a_lookalike_name(db: Path) -> None:
    for iso in ("cafe\u0301.iso", "disk.qc\u043ew2"):
        config = json.dumps({"disk": True, "iso": iso}).encode()
        files = image_files() | {"config.json": config, iso: iso_bytes()}
        _load_refused(db, simple_tar(files), '"iso" must be a plain file name')


def test_load_refuses_a_missing_disk_or_config(db: Path) -> None:
    files = image_files()
    _load_refused(db, simple_tar({"config.json": files["config.json"]}), "lacks disk.qcow2")
    _load_refused(db, simple_tar({"disk.qcow2": files["disk.qcow2"]}), "has no config.json")
    iso_files = image_files(iso="x.iso")
    del iso_files["x.iso"]
    _load_refused(db, simple_tar(iso_files), "lacks x.iso")
    # A disk the config does not declare is not part of the image either.
    _load_refused(db, simple_tar({"config.json": b"{}", "disk.qcow2": files["disk.qcow2"]}),
                  "'disk.qcow2' is not part of the image")


@pytest.mark.parametrize("disk,message", [
    (b"x" * 5000, "it is not a qcow2 disk"),
    (b"# Disk DescriptorFile\nversion=1\nRW 2048 FLAT \"/etc/shadow\" 0\n", "it is not a qcow2 disk"),
    (b"QED\x00" + bytes(4092), "it is not a qcow2 disk"),
    (b"", "it is not a qcow2 disk"),
], ids=["junk", "vmdk-descriptor", "qed", "empty"])
def test_load_refuses_a_disk_that_is_not_qcow2(db: Path, disk: bytes, message: str) -> None:
    _load_refused(db, image_tar(disk=disk), f"'disk.qcow2' is refused: {message}")


@pytest.mark.parametrize("content,message", [
    (b"not an iso at all" * 4000, "it is not an ISO 9660 image"),
    (b"# Disk DescriptorFile\nRW 2048 FLAT \"/etc/shadow\" 0\n", "it is a VMDK descriptor"),
    (b"QED\x00" + bytes(0x9000), "it is a QED disk"),
], ids=["junk", "vmdk-descriptor", "qed"])
def test_load_refuses_an_iso_member_that_is_no_iso(db: Path, content: bytes, message: str) -> None:
    files = image_files(iso="x.iso") | {"x.iso": content}
    _load_refused(db, simple_tar(files), f"'x.iso' is refused: {message}")


def test_load_refuses_a_qcow2_posing_as_iso(db: Path, tmp_path: Path) -> None:
    evil = qcow2_bytes(tmp_path, backing="/etc/shadow")
    files = image_files(iso="x.iso") | {"x.iso": evil}
    _load_refused(db, simple_tar(files), "names a backing file")


@pytest.mark.parametrize("iso", ["/etc/shadow", "../../../etc/shadow", "..", "sub/x.iso", ".hidden.iso",
                                 "config.json", "disk.qcow2", "-rf.iso", "a:b.iso", "x,y.iso", ""])
def test_image_iso_naming_a_host_file_is_refused(db: Path, iso: str) -> None:
    config = json.dumps({"disk": True, "iso": iso}).encode()
    err = _load_refused(db, simple_tar(image_files() | {"config.json": config}), 'config.json: "iso"')
    assert err.count("\n") <= 2  # the message and its hint


@pytest.mark.parametrize("config,message", [
    (b'{"disk": true, "iso": 5}', '"iso" must be a file name, not 5'),
    (b'{"disk": true, "iso": ["a.iso"]}', '"iso" must be a file name, not ["a.iso"]'),
    (b'{"disk": true, "iso": {"path": "/etc/shadow"}}', '"iso" must be a file name'),
    (b'{"disk": "yes"}', '"disk" must be true or false'),
    (b'{"disk": 1}', '"disk" must be true or false'),
    (b'{"disk": true, "disk": false}', "the key 'disk' appears twice"),
    (b'{"disk": true, "x": NaN}', "NaN is not a JSON value"),
    (b'{"disk": true, "x": "\xff"}', "config.json is not valid JSON"),
    (b"[" * 200_000 + b"]" * 200_000, "larger than 64 KiB"),
    (b"[" * 30_000 + b"]" * 30_000, "nested too deeply"),
    (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "nested too deeply"),
    (b'{"disk": true, "pad": "' + b"x" * 70_000 + b'"}', "larger than 64 KiB"),
    (b'{"disk": true, "arch": "sparc"}', '"arch" must be one of x86_64, aarch64, not "sparc"'),
    (b'{"disk": true, "arch": 64}', '"arch" must be one of x86_64, aarch64, not 64'),
], ids=["iso-int", "iso-list", "iso-object", "disk-str", "disk-int", "dup-key", "nan", "bad-utf8",
        "deep-200000", "deep-30000", "deep-objects", "big", "arch-unknown", "arch-int"])
def test_odd_config_values_are_clear_errors(db: Path, config: bytes, message: str) -> None:
    _load_refused(db, simple_tar(image_files() | {"config.json": config}), message)


def test_image_architecture_is_read_from_its_config(db: Path) -> None:
    from minivirt_core.database import Database
    from minivirt_core.hostinfo import host_arch
    from minivirt_core.images import ImageStore

    miv(db, "load", "arm", input=simple_tar(image_files() | {"config.json": b'{"arch": "aarch64", "disk": true}'}))
    miv(db, "load", "old", input=simple_tar(image_files()))
    store = ImageStore(Database(db))
    assert store.resolve("arm").arch == "aarch64"
    assert store.resolve("old").arch == host_arch()  # made before architectures were recorded


def test_config_keys_of_a_newer_minivirt_are_kept(db: Path) -> None:
    config = b'{"disk": true, "future": {"nested": [1, 2]}}'
    files = image_files() | {"config.json": config}
    miv(db, "load", "newer", input=simple_tar(files))
    assert (db / "images" / "newer" / "config.json").read_bytes() == config
    assert b"no problems" in miv(db, "fsck").stderr


@pytest.mark.parametrize("garbage", [b"garbage!", b"\x1f\x8bgarbage", b"\x1f", b"\0" * 1024, os.urandom(3 << 20)],
                         ids=["text", "gzip-magic", "half-magic", "zeros", "big"])
def test_trailing_garbage_after_the_gzip_stream_is_always_refused(db: Path, garbage: bytes) -> None:
    data = gzip.compress(image_tar())
    # (Garbage that starts like a gzip member is read as a damaged second member.)
    _load_refused(db, data + garbage, "data after the end of its gzip stream", "the archive is not valid gzip")


def test_concatenated_gzip_members_are_one_stream(db: Path) -> None:
    tar = image_tar()
    miv(db, "load", "two", input=gzip.compress(tar[:100000]) + gzip.compress(tar[100000:]))
    assert b"no problems" in miv(db, "fsck").stderr


@pytest.mark.parametrize("compress", [False, True], ids=["tar", "tgz"])
def test_trailing_data_after_the_tar_end_is_refused(db: Path, compress: bool) -> None:
    # A second archive after the first one's end marker (GNU tar -i would extract it).
    data = image_tar() + simple_tar({"extra": b"hidden"})
    _load_refused(db, gzip.compress(data) if compress else data, "data after the end of the tar archive")


def test_zero_padding_after_the_tar_end_is_fine(db: Path) -> None:
    miv(db, "load", "padded", input=image_tar() + bytes(64 * 1024))
    assert b"no problems" in miv(db, "fsck").stderr


# Issue 9, point 16: odd headers are clear errors. ------------------------------------------

def _pax_member(name: str, data: bytes, size: str) -> bytes:
    """A pax archive whose one member's pax header says ``size=<size>``."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.pax_headers = {"size": size}
    return tar_bytes([(info, data)], fmt=tarfile.PAX_FORMAT)


@pytest.mark.parametrize("size,message", [
    ("abc", "invalid member size ('abc')"),
    ("-5", "negative member size ('-5')"),
    ("1_0", "invalid member size ('1_0')"),
    (" 10", "invalid member size"),
    ("+10", "invalid member size"),
], ids=["letters", "negative", "underscore", "space", "plus"])
def test_pax_size_that_is_not_a_number_is_refused(db: Path, size: str, message: str) -> None:
    _load_refused(db, _pax_member("config.json", b'{"disk": true}', size), message)


def test_negative_size_in_a_ustar_header_is_refused(db: Path) -> None:
    block = bytearray(tar_bytes([CONFIG])[:512])
    block[124:136] = b"\xff" * 12  # GNU base-256: -1
    block[148:156] = b"        "
    block[148:155] = f"{sum(block):06o}\0".encode()
    _load_refused(db, bytes(block) + bytes(1024), "negative size")


def test_malformed_pax_records_are_refused(db: Path) -> None:
    info = tarfile.TarInfo("config.json")
    info.pax_headers = {"path": "config.json"}
    raw = bytearray(tar_bytes([(info, b"{}")], fmt=tarfile.PAX_FORMAT))
    record = raw.index(b"path=")
    raw[record - 3: record - 1] = b"99"  # a record length past the header's end
    _load_refused(db, bytes(raw), "malformed pax header")


def test_300_character_member_name_is_refused(db: Path) -> None:
    name = "n" * 300
    err = _load_refused(db, tar_bytes([file_member(name, b"x")], fmt=tarfile.PAX_FORMAT),
                        "has a name an image may not use: it is longer than 200 bytes")
    assert name not in err  # shortened in the message


def test_pax_sparse_member_is_refused(db: Path) -> None:
    info = tarfile.TarInfo("disk.qcow2")
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "disk.qcow2"}
    _load_refused(db, tar_bytes([CONFIG, (info, b"x" * 512)], fmt=tarfile.PAX_FORMAT), "is a sparse file")


def test_enospc_during_load_is_a_clear_error(small_tmpfs: Path) -> None:
    db = small_tmpfs / "db"
    disk = qcow2_of(os.urandom(4 << 20), 4 << 20)
    for data in (image_tar(disk=disk), gzip.compress(image_tar(disk=disk), compresslevel=1)):
        proc = miv(db, "load", "big", input=data, rc=1)
        err = proc.stderr.decode()
        assert "no space left on the device while writing the image's disk.qcow2" in err, err
        assert "miv prune" in err and "Traceback" not in err
        _assert_nothing_left(db)
    assert b"no problems" in miv(db, "fsck").stderr
    miv(db, "load", "small", input=image_tar())  # the database still works


# Issue 9, point 2: `save -o` never replaces what is not a regular file. --------------------

def test_save_into_a_fifo_writes_into_it(db: Path, tmp_path: Path) -> None:
    import threading

    miv(db, "load", "t", input=image_tar())
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    miv(db, "save", "t", "-o", str(fifo))
    reader.join(60)
    assert got == [miv(db, "save", "t").stdout]
    assert fifo.is_fifo() and sorted(os.listdir(tmp_path)) == ["db", "fifo"]


def test_save_refuses_to_write_through_a_symlink(db: Path, tmp_path: Path) -> None:
    miv(db, "load", "t", input=image_tar())
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    link = tmp_path / "link.tar"
    link.symlink_to(victim)
    err = miv(db, "save", "t", "-o", str(link), rc=1).stderr.decode()
    assert f"refusing to write to {link}: it is a symbolic link" in err and "Traceback" not in err
    assert link.is_symlink() and victim.read_text() == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["db", "link.tar", "victim"]


def test_save_to_dev_null_keeps_the_device(db: Path, tmp_path: Path) -> None:
    """As root, `save -o /dev/null` replaced the machine's /dev/null with a regular file. A private
    null device (same major/minor, made with mknod as root) is tried first, so that a regression
    fails here without touching the real /dev/null, which other programs on the machine use."""
    import stat

    miv(db, "load", "t", input=image_tar())
    targets = [Path("/dev/null")]
    if os.geteuid() == 0:
        private = tmp_path / "null"
        os.mknod(private, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        targets.insert(0, private)
    for target in targets:
        before = os.lstat(target)
        miv(db, "save", "t", "-o", str(target))
        after = os.lstat(target)
        assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev, target
        assert after.st_ino == before.st_ino, target
        assert not [n for n in os.listdir(target.parent) if n.startswith(".null.")]


def test_save_refuses_a_socket(db: Path, tmp_path: Path) -> None:
    import socket

    miv(db, "load", "t", input=image_tar())
    path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        err = miv(db, "save", "t", "-o", str(path), rc=1).stderr.decode()
    assert "it is a socket, not a regular file" in err
    assert path.is_socket()


def test_save_into_a_missing_folder_is_a_clear_error(db: Path, tmp_path: Path) -> None:
    miv(db, "load", "t", input=image_tar())
    target = tmp_path / "missing" / "dir" / "x.tar"
    err = miv(db, "save", "t", "-o", str(target), rc=1).stderr.decode()
    assert f"the folder {target.parent} does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "missing").exists()


def test_save_over_a_regular_file_replaces_it_whole(db: Path, tmp_path: Path) -> None:
    miv(db, "load", "t", input=image_tar())
    out = tmp_path / "x.tar"
    out.write_bytes(b"old" * 100000)
    miv(db, "save", "t", "-o", str(out))
    assert out.read_bytes() == miv(db, "save", "t").stdout
    assert sorted(os.listdir(tmp_path)) == ["db", "x.tar"]


# Issue 9, point 1: nothing in an image or a VM config makes QEMU open a host file. ----------

def _plant_image(db: Path, tiny_disk: Path, config: bytes, tag: str, extra: dict[str, bytes] | None = None) -> str:
    """An image folder written straight into the database (as a careless or hostile hand would)."""
    from minivirt_core import imageid

    staging = db / "planting"
    staging.mkdir()
    os.link(tiny_disk, staging / "disk.qcow2")
    (staging / "config.json").write_bytes(config)
    for name, data in (extra or {}).items():
        (staging / name).write_bytes(data)
    image_id = imageid.compute_id(staging)
    staging.rename(db / "images" / image_id)
    (db / "images" / tag).symlink_to(image_id)
    return image_id


@pytest.mark.vm
@pytest.mark.parametrize("iso", ["/etc/shadow", "../../../etc/shadow"])
def test_image_iso_naming_a_host_file_planted_in_the_database_is_reported_and_refused(
        tiny_db: Path, iso: str) -> None:
    disk = tiny_db / "images" / "tiny" / "disk.qcow2"
    image_id = _plant_image(tiny_db, disk, json.dumps({"disk": True, "iso": iso}).encode(), "planted")
    out = miv(tiny_db, "fsck", rc=1).stdout.decode()
    assert f'image {image_id[:12]}: config.json: "iso" is not a plain file name' in out
    err = miv(tiny_db, "create", "planted", "v", rc=1).stderr.decode()
    assert "image planted is unsafe or damaged" in err and "Traceback" not in err
    assert db_entries(tiny_db)["vms"] == [] and db_entries(tiny_db)["staging"] == []


@pytest.mark.vm
def test_image_changed_after_create_keeps_its_vm_from_starting(tiny_db: Path) -> None:
    miv(tiny_db, "create", "tiny", "v")
    config = tiny_db / "images" / "tiny" / "config.json"
    config.unlink()  # (a hard link of the cached image's file: replace it, don't write through it)
    config.write_text(json.dumps({"disk": True, "iso": "../../../../etc/shadow"}))
    err = miv(tiny_db, "start", "v", rc=1).stderr.decode()
    assert "VM 'v' cannot start: image" in err and "unsafe or damaged" in err
    assert not (tiny_db / "vms" / "v" / "qemu.pid").exists()


@pytest.mark.parametrize("resource,message", [
    ({"type": "cdrom", "filename": "/etc/shadow"}, "not a file of the VM's folder"),
    ({"type": "disk", "filename": "../../../../etc/shadow"}, "not a file of the VM's folder"),
    ({"type": "cdrom", "filename": "json:{\"file.filename\":\"/etc/shadow\"}"}, "not a file of the VM's folder"),
    ({"type": "cdrom", "filename": "link.iso"}, "missing or not a regular file"),
    ({"type": "cdrom", "filename": "config.json"}, "one of minivirt's own files"),
    ({"type": "cdrom", "filename": "fake.iso"}, "not an ISO 9660 image"),
    ({"type": "disk", "filename": "fake.iso"}, "not a qcow2 disk"),
    ({"type": "disk", "filename": "backed.qcow2"}, "names a backing file"),
    ({"type": "floppy", "filename": "fake.iso"}, "is not a resource"),
], ids=["absolute", "dot-dot", "json-protocol", "symlink", "own-file", "cdrom-not-iso", "disk-not-qcow2",
        "backing-file", "bad-type"])
@pytest.mark.vm
def test_vm_config_resource_naming_a_host_file_is_refused(tiny_db: Path, tmp_path: Path, resource: dict,
                                                          message: str) -> None:
    miv(tiny_db, "create", "tiny", "v")
    vm = tiny_db / "vms" / "v"
    (vm / "link.iso").symlink_to("/etc/shadow")
    (vm / "fake.iso").write_bytes(b"x" * 40000)
    (vm / "backed.qcow2").write_bytes(qcow2_bytes(tmp_path, backing="/etc/shadow"))
    config = json.loads((vm / "config.json").read_text())
    config["resources"] = [resource]
    (vm / "config.json").write_text(json.dumps(config))
    err = miv(tiny_db, "start", "v", rc=1).stderr.decode()
    assert "VM 'v' cannot start:" in err and message in err, err
    assert not (vm / "qemu.pid").exists()
    assert "vm v: " in miv(tiny_db, "fsck", rc=1).stdout.decode()


@pytest.mark.vm
def test_vm_disk_with_a_foreign_backing_file_is_refused(tiny_db: Path, tmp_path: Path) -> None:
    miv(tiny_db, "create", "tiny", "v")
    disk = tiny_db / "vms" / "v" / "disk.qcow2"
    disk.write_bytes(qcow2_bytes(tmp_path, backing="/etc/shadow"))
    err = miv(tiny_db, "start", "v", rc=1).stderr.decode()
    assert "names the backing file '/etc/shadow', not its image's disk" in err


def _open_files(pid: int) -> list[str]:
    paths = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            paths.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            continue
    return paths


@pytest.mark.vm
def test_iso_member_reaches_qemu_as_raw_and_nothing_outside_is_opened(tiny_db: Path) -> None:
    import asyncio

    from minivirt_core.qemu.monitor import execute

    tiny_disk = (tiny_db / "images" / "tiny" / "disk.qcow2").read_bytes()
    files = {"config.json": b'{"disk": true, "iso": "seed.iso"}', "disk.qcow2": tiny_disk, "seed.iso": iso_bytes()}
    miv(tiny_db, "load", "with-iso", input=simple_tar(files))
    image_dir = (tiny_db / "images" / "with-iso").resolve()
    miv(tiny_db, "create", "with-iso", "v", "-m", "200")
    vm = (tiny_db / "vms" / "v").resolve()
    try:
        miv(tiny_db, "start", "v", "--daemon")
        pid = int((vm / "qemu.pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        drives = [cmdline[i + 1].decode() for i, arg in enumerate(cmdline) if arg == b"-drive"]
        assert drives == [
            "if=virtio,file=disk.qcow2,format=qcow2",
            f"file=../../images/{image_dir.name}/seed.iso,format=raw,media=cdrom,readonly=on",
        ]
        blocks = asyncio.run(execute(vm / "qmp.sock", "query-block"))
        images = {b["device"]: b["inserted"]["image"] for b in blocks if "inserted" in b}
        formats = {image["filename"].rsplit("/", 1)[-1]: image["format"] for image in images.values()}
        assert formats == {"disk.qcow2": "qcow2", "seed.iso": "raw"}
        (disk,) = [i for i in images.values() if i["format"] == "qcow2"]
        assert disk["backing-image"]["format"] == "qcow2" and "backing-image" not in disk["backing-image"]
        # Every file QEMU holds is in the VM's folder or its image's (or a device, socket, pipe...).
        files_open = [p for p in _open_files(pid) if p.startswith("/") and not p.startswith("/dev/")]
        outside = [p for p in files_open if not p.startswith((f"{vm}/", f"{image_dir}/"))]
        assert outside == [], outside
        assert f"{image_dir}/seed.iso" in files_open and f"{image_dir}/disk.qcow2" in files_open
    finally:
        miv(tiny_db, "destroy", "v", rc=None)


@pytest.mark.parametrize("kind", ["http", "file"])
@pytest.mark.parametrize("case", ["iso-host-file", "extra-member", "lookalike", "not-qcow2", "trailing"])
def test_pull_takes_exactly_what_load_takes(db: Path, tmp_path: Path, kind: str, case: str) -> None:
    from .helpers import image_id_of
    from .httpserver import StaticServer

    files = image_files()
    tail = b""
    if case == "iso-host-file":
        files["config.json"], message = b'{"disk": true, "iso": "../../../etc/shadow"}', '"iso" is not a plain file'
    elif case == "extra-member":
        files["extra"], message = b"data", "'extra' is not part of the image"
    elif case == "lookalike":
        files["disk.qc\u043ew2"], message = iso_bytes(), "is not part of the image"
    elif case == "not-qcow2":
        files["disk.qcow2"], message = b"x" * 4096, "'disk.qcow2' is refused: it is not a qcow2 disk"
    else:
        tail, message = b"trailing garbage", "data after the end of its gzip stream"
    image_id = image_id_of(files)
    tgz = gzip.compress(simple_tar(files)) + tail
    server = StaticServer(tmp_path / "www").start() if kind == "http" else None
    url = put_on_remote(kind, tmp_path, server, image_id, tgz, "evil")
    try:
        miv(db, "remote", "add", "r", url)
        err = miv(db, "pull", "r", "evil", rc=1).stderr.decode()
    finally:
        if server:
            server.stop()
    assert message in err and "Traceback" not in err, err
    _assert_nothing_left(db)
    cache = db / "cache"
    assert not cache.exists() or os.listdir(cache) == []
