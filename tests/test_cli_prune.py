"""`miv prune` on a terminal lists what it will remove and the space that frees, and asks;
-y skips the question; with stdin not a terminal it goes ahead as before (issue 10, 9)."""

from __future__ import annotations

from pathlib import Path

from .helpers import image_files, image_id_of, image_tar, miv, on_terminal


def _unused_image(db: Path) -> str:
    """Load an image and untag it, so prune would remove it; its id."""
    miv(db, "load", "keep", input=image_tar(0))
    miv(db, "load", "gone", input=image_tar(1))
    miv(db, "untag", "gone")
    return image_id_of(image_files(1))


def test_prune_on_a_terminal_lists_what_goes_and_asks_first(db: Path) -> None:
    unused = _unused_image(db)
    rc, out = on_terminal(db, "prune", answer=b"n\n")
    text = out.decode()
    assert rc == 0, text
    assert f"will remove image {unused[:12]} (" in text and "Remove them, freeing " in text
    assert "nothing removed" in text and (db / "images" / unused).is_dir()  # "no" keeps it
    rc, out = on_terminal(db, "prune", answer=b"y\n")
    assert rc == 0 and "removed 1 image(s)" in out.decode() and "freed" in out.decode()
    assert not (db / "images" / unused).exists()
    assert (db / "images" / image_id_of(image_files(0))).is_dir()  # the tagged one stays


def test_prune_yes_does_not_ask(db: Path) -> None:
    unused = _unused_image(db)
    rc, out = on_terminal(db, "prune", "-y")
    assert rc == 0 and b"[y/N]" not in out and f"removed image {unused[:12]}".encode() in out
    assert not (db / "images" / unused).exists()


def test_prune_with_stdin_not_a_terminal_goes_ahead_as_before(db: Path) -> None:
    unused = _unused_image(db)
    err = miv(db, "prune").stderr.decode()  # stdin is /dev/null
    assert f"removed image {unused[:12]} (" in err and "[y/N]" not in err and "freed" in err
    assert not (db / "images" / unused).exists()


def test_prune_removes_only_what_it_listed(db: Path) -> None:
    from minivirt_core import Minivirt

    unused = _unused_image(db)
    images = Minivirt(db).images
    plan = images.prune(dry_run=True)
    assert plan.images == [unused]
    miv(db, "untag", "keep")  # another image becomes unused after the list was shown
    report = images.prune(listed=plan)
    assert report.images == [unused] and (db / "images" / image_id_of(image_files(0))).is_dir()
