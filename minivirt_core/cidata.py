"""The cloud-init ``cidata`` ISO, made in pure Python (no genisoimage needed)."""

from __future__ import annotations

import io
from pathlib import Path


def write_cidata(path: Path, user_data: str, meta_data: str = "") -> None:
    """An ISO9660 + Joliet + Rock Ridge image labelled ``cidata`` with ``user-data``
    (``#cloud-config`` + the text) and ``meta-data``, as cloud-init's NoCloud expects."""
    import pycdlib

    files = {"user-data": ("/USERDATA.;1", ("#cloud-config\n" + user_data).encode()),
             "meta-data": ("/METADATA.;1", meta_data.encode())}
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata")
    for name, (iso_path, data) in files.items():
        iso.add_fp(io.BytesIO(data), len(data), iso_path, rr_name=name, joliet_path=f"/{name}")
    tmp = path.with_name(f".{path.name}.tmp")
    iso.write(str(tmp))
    iso.close()
    tmp.rename(path)
