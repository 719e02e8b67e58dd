"""The cloud-init NoCloud ``cidata`` ISO, made in pure Python (no genisoimage needed)."""

from __future__ import annotations

import io
from pathlib import Path


def write_cidata(path: Path, user_data: str, meta_data: str = "") -> None:
    """A seed whose ``user-data`` is ``#cloud-config`` + ``user_data`` (recipes' form)."""
    write_iso(path, "#cloud-config\n" + user_data, meta_data)


def write_iso(path: Path, user_data: str, meta_data: str) -> None:
    """An ISO9660 + Joliet + Rock Ridge image labelled ``cidata`` with ``user-data`` and
    ``meta-data`` as given, as cloud-init's NoCloud expects; written aside, then renamed."""
    import pycdlib

    files = {"user-data": ("/USERDATA.;1", user_data.encode()),
             "meta-data": ("/METADATA.;1", meta_data.encode())}
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata")
    for name, (iso_path, data) in files.items():
        iso.add_fp(io.BytesIO(data), len(data), iso_path, rr_name=name, joliet_path=f"/{name}")
    tmp = path.with_name(f".{path.name}.tmp")
    iso.write(str(tmp))
    iso.close()
    tmp.rename(path)
