"""The image database through the real `miv` command: ids, tags, listing, prune, save/load."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

from .helpers import TEST_VECTOR_ID, db_entries, image_files, image_id_of, image_tar, miv, qcow2_of, simple_tar


def test_test_vector_through_the_id_function(db: Path) -> None:
    import hashlib

    from minivirt_core import imageid

    digests = {name: hashlib.sha256(data).hexdigest() for name, data in (("foo", b"Hello,"), ("bar", b"World!"))}
    assert imageid.combine(digests) == TEST_VECTOR_ID


def test_test_vector_folder_is_not_an_image_to_load(db: Path) -> None:
    # foo and bar test the id algorithm; as an archive they are no image (no config.json, no disk).
    proc = miv(db, "load", "vector", input=simple_tar({"foo": b"Hello,", "bar": b"World!"}), rc=1)
    assert b"is not part of an image" in proc.stderr
    assert db_entries(db)["images"] == [] and db_entries(db)["staging"] == []


def test_loaded_image_gets_the_id_of_its_files(db: Path) -> None:
    files = image_files()
    out = miv(db, "load", "real", input=simple_tar(files))
    assert out.stdout.decode().strip() == image_id_of(files)[:12]
    assert os.readlink(db / "images" / "real") == image_id_of(files)


def test_test_vector_from_a_folder(tmp_path: Path) -> None:
    from minivirt_core import imageid

    (tmp_path / "foo").write_bytes(b"Hello,")
    (tmp_path / "bar").write_bytes(b"World!")
    assert imageid.compute_id(tmp_path) == TEST_VECTOR_ID


def test_gzipped_input_is_accepted_as_is(db: Path) -> None:
    import gzip

    data = gzip.compress(image_tar())
    miv(db, "load", "gz", input=data)
    assert os.readlink(db / "images" / "gz") == image_id_of(image_files())


def test_images_lists_short_id_arch_size_and_tags(db: Path) -> None:
    from minivirt_core.hostinfo import host_arch

    miv(db, "load", "a", "b", input=image_tar())
    out = miv(db, "images").stdout.decode().splitlines()
    assert out[0].split() == ["IMAGE", "ID", "TAGS", "ARCH", "SIZE", "CREATED", "WARM"]
    image_id = image_id_of(image_files())
    assert out[1].startswith(image_id[:12])
    assert out[1].split()[1:4] == ["a", "b", host_arch()]  # an image recording no architecture: the host's
    listed = json.loads(miv(db, "images", "--json").stdout)
    assert listed == [{"id": image_id, "short_id": image_id[:12], "size": listed[0]["size"], "tags": ["a", "b"],
                       "created": listed[0]["created"], "arch": host_arch(), "warm_states": 0}]
    assert listed[0]["size"] >= 5000
    assert miv(db, "images", "-q").stdout.decode() == image_id[:12] + "\n"


def test_empty_database_is_created_and_listed(db: Path) -> None:
    assert miv(db, "images", "-q").stdout == b""


def test_references_by_tag_id_and_prefix(db: Path) -> None:
    files = {"config.json": b"{}"}
    image_id = image_id_of(files)
    miv(db, "load", "t1", input=simple_tar(files))
    for ref in ("t1", image_id, image_id[:12], image_id[:4], image_id[:4].upper()):
        miv(db, "tag", ref, f"via-{len(ref)}")
    proc = miv(db, "tag", image_id[:3], "x", rc=1)
    assert b"no image named" in proc.stderr


def test_ambiguous_prefix_lists_candidates(db: Path) -> None:
    # Make images until two ids share a 4-digit prefix is slow; instead place two
    # image folders whose ids share a prefix (valid hex names, any content).
    images = db / "images"
    miv(db, "images")
    for suffix in ("a" * 60, "b" * 60):
        (images / f"beef{suffix}").mkdir()
    proc = miv(db, "tag", "beef", "x", rc=1)
    err = proc.stderr.decode()
    assert "ambiguous" in err and "beefaaaaaaaa" in err and "beefbbbbbbbb" in err


def test_retagging_moves_the_tag_and_says_so(db: Path) -> None:
    miv(db, "load", "t", input=image_tar(1))
    miv(db, "load", "other", input=image_tar(2))
    proc = miv(db, "tag", "other", "t")
    assert b"moved from" in proc.stderr
    assert os.readlink(db / "images" / "t") == image_id_of(image_files(2))


def test_untag_then_prune_removes_the_image(db: Path) -> None:
    miv(db, "load", "t", input=image_tar())
    image_id = image_id_of(image_files())
    miv(db, "untag", "t")
    assert (db / "images" / image_id).is_dir()
    dry = miv(db, "prune", "--dry-run")
    assert b"would remove image" in dry.stderr and (db / "images" / image_id).is_dir()
    out = miv(db, "prune")
    assert f"removed image {image_id[:12]}".encode() in out.stderr and b"freed" in out.stderr
    assert not (db / "images" / image_id).exists()


def test_untag_unknown_tag_is_an_error(db: Path) -> None:
    proc = miv(db, "untag", "nope", rc=1)
    assert b"no tag named 'nope'" in proc.stderr


def test_prune_keeps_images_used_by_vms(db: Path) -> None:
    files = {"config.json": b"{}"}
    image_id = image_id_of(files)
    miv(db, "load", input=simple_tar(files))
    vm = db / "vms" / "keeper"
    vm.mkdir(parents=True)
    (vm / "config.json").write_text(json.dumps({"image": image_id, "disk": True}))
    miv(db, "prune")
    assert (db / "images" / image_id).is_dir()


def test_prune_survives_a_vm_whose_image_is_gone(db: Path) -> None:
    vm = db / "vms" / "orphan"
    vm.mkdir(parents=True)
    (vm / "config.json").write_text(json.dumps({"image": "f" * 64, "disk": True}))
    (db / "vms" / "garbage").mkdir()
    (db / "vms" / "garbage" / "config.json").write_text("{not json")
    miv(db, "prune")
    out = miv(db, "fsck", rc=1).stdout.decode()
    assert "vm garbage: config.json is not valid JSON: " in out
    assert "vm orphan: its image ffffffffffff is missing" in out


def test_save_and_load_round_trip(db: Path, tmp_path: Path) -> None:
    files = image_files(disk=qcow2_of(os.urandom(300000)))
    miv(db, "load", "orig", input=simple_tar(files))
    saved = miv(db, "save", "orig").stdout
    with tarfile.open(fileobj=__import__("io").BytesIO(saved)) as tar:
        assert sorted(tar.getnames()) == ["config.json", "disk.qcow2"]
    other = tmp_path / "db2"
    miv(other, "load", "copy", input=saved)
    assert os.readlink(other / "images" / "copy") == image_id_of(files)
    miv(db, "save", "orig", "-o", str(tmp_path / "x.tar"))
    assert (tmp_path / "x.tar").read_bytes() == saved
    assert not list(tmp_path.glob(".x.tar.part"))


def test_save_refuses_a_terminal(db: Path) -> None:
    import pty
    import subprocess

    from .helpers import MIV

    miv(db, "load", "t", input=image_tar())
    leader, follower = pty.openpty()
    proc = subprocess.run([MIV, "save", "t"], stdout=follower, stderr=subprocess.PIPE,
                          env={**os.environ, "MINIVIRT_DB_PATH": str(db)}, timeout=30)
    os.close(follower)
    os.close(leader)
    assert proc.returncode == 2
    assert b"refusing to write an archive to a terminal" in proc.stderr


def test_save_unknown_image(db: Path) -> None:
    proc = miv(db, "save", "ghost", rc=1)
    assert b"no image named 'ghost'" in proc.stderr
    assert b"Traceback" not in proc.stderr


def test_load_same_image_twice_keeps_one_copy(db: Path) -> None:
    data = image_tar()
    miv(db, "load", "x", input=data)
    miv(db, "load", "y", input=data)
    entries = db_entries(db)
    assert len([e for e in entries["images"] if len(e) == 64]) == 1
    assert entries["staging"] == []


def test_fsck_clean_and_detects_corruption_and_dangling_tags(db: Path) -> None:
    files = image_files()
    miv(db, "load", "t", input=simple_tar(files))
    assert b"no problems" in miv(db, "fsck").stderr
    image_id = image_id_of(files)
    (db / "images" / image_id / "disk.qcow2").write_bytes(files["disk.qcow2"][:-1] + b"!")
    (db / "images" / "dangling").symlink_to("0" * 64)
    (db / "images" / "tmpabc123").mkdir()
    out = miv(db, "fsck", rc=1).stdout.decode()
    assert "corrupt" in out and "tag dangling: points at missing image" in out and "tmpabc123" in out


def test_fsck_runs_qemu_img_check(db: Path, tmp_path: Path) -> None:
    from .helpers import qcow2_bytes

    disk = bytearray(qcow2_bytes(tmp_path))
    miv(db, "load", "q", input=image_tar(disk=bytes(disk)))
    image_id = image_id_of(image_files(disk=bytes(disk)))
    assert miv(db, "fsck").returncode == 0
    # Break the refcount table offset: qemu-img check rejects the file.
    path = db / "images" / image_id / "disk.qcow2"
    raw = bytearray(path.read_bytes())
    raw[48:56] = (1 << 40).to_bytes(8, "big")
    path.write_bytes(bytes(raw))
    out = miv(db, "fsck", rc=1).stdout.decode()
    assert "fails qemu-img check" in out


def test_doctor_reports_requirements(db: Path) -> None:
    out = miv(db, "doctor").stdout.decode()
    assert "qemu-system-x86_64" in out and "qemu-img" in out and "accelerator" in out
    proc = miv(db, "doctor", env={"PATH": "/nonexistent"}, rc=1)
    assert b"FAIL qemu-system-x86_64: not found on PATH" in proc.stdout
    assert b"apt-get install qemu-system-x86 qemu-utils" in proc.stdout


def test_write_sparse_leaves_aligned_zeros_as_holes_and_reads_the_same(tmp_path: Path) -> None:
    from minivirt_core.fsutil import HOLE_UNIT, write_sparse

    unit = HOLE_UNIT
    data = os.urandom(unit + 100) + bytes(3 * unit) + os.urandom(unit // 2) + b"\0" * (2 * unit + 7)
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    holes, offset = False, 0
    for size in (1000, unit + 4000, 2 * unit + 3, len(data)):  # pieces that split units
        piece = data[offset:offset + size]
        holes |= write_sparse(fd, piece, offset)
        offset += len(piece)
    os.ftruncate(fd, len(data))  # the file ends in a hole
    os.close(fd)
    assert holes and path.read_bytes() == data
    assert path.stat().st_blocks * 512 <= len(data) - 2 * unit + 4096  # two units unwritten, blocks round up


def test_loaded_disk_keeps_its_zeros_as_holes(db: Path, tmp_path: Path) -> None:
    import subprocess

    raw, disk = tmp_path / "raw", tmp_path / "disk.qcow2"
    raw.write_bytes(os.urandom(1 << 20) + bytes(4 << 20) + os.urandom(1 << 20))
    subprocess.run(["qemu-img", "convert", "-q", "-S", "0", "-f", "raw", "-O", "qcow2", str(raw), str(disk)],
                   check=True)  # -S 0: the zeros are written out in the qcow2
    files = {"config.json": b'{"disk": true}', "disk.qcow2": disk.read_bytes()}
    miv(db, "load", "sparse", input=simple_tar(files))
    loaded = db / "images" / image_id_of(files) / "disk.qcow2"
    assert loaded.read_bytes() == files["disk.qcow2"]
    assert loaded.stat().st_blocks * 512 < len(files["disk.qcow2"]) - (3 << 20)
    miv(db, "fsck")


def test_streaming_heap_reuses_freed_pieces_instead_of_faulting_new_pages() -> None:
    # What pull, push and load do with their ~1 MiB pieces: each made, used, freed. Untuned,
    # glibc gives the main thread fresh pages each time (~96,000 faults for these 400 MiB).
    import subprocess
    import sys

    code = """if True:
        import resource, threading
        from minivirt_core import heap
        assert heap.tune_for_streaming()
        def pieces():
            before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
            for _ in range(200):
                a = b"\\1" * (1 << 20); b = b"\\2" * (1 << 20); del a, b
            print(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
        t = threading.Thread(target=pieces); t.start(); t.join()
        pieces()
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert all(int(faults) < 5000 for faults in out.split()), out
