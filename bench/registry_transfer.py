"""Pull and push of a ~200 MiB image (half random) with a local OCI registry, against
skopeo in the same run.

- pull: `miv pull` (manifest, config, the layer streamed with its digest verified,
  gunzip, tar checks, hashing, writing the image) vs `skopeo copy docker://… dir:…` of the
  same image (download and digest check, no unpacking). Target: ratio >= 0.9, peak RSS
  of `miv pull` <= 150 MB.
- push: `miv push` (tar + parallel gzip streamed into a chunked upload, config, manifest)
  vs `skopeo copy dir:… docker://…` of the ready layer. Each push goes to a fresh
  registry (a registry that has the blob makes a push skip it). Target: ratio >= 0.8.
Registry: Debian's docker-registry on 127.0.0.1, started here (tests/registry.py).
Run: .venv/bin/python bench/registry_transfer.py [SIZE_MIB]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import MIV, ROOT, half_random_image, run_timed, verdict

sys.path.insert(0, str(ROOT))

from minivirt_core.layout import oci_layer_record
from tests.registry import Registry

RUNS = 5


def main() -> None:
    size_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src = half_random_image(work, size_mib)
        db = work / "db"
        env = {"MINIVIRT_DB_PATH": str(db)}
        subprocess.run(f"tar c -C {src} config.json disk.qcow2 | {MIV} load big", shell=True, check=True,
                       env={**os.environ, **env}, capture_output=True)
        image_id = os.readlink(db / "images" / "big")

        push_ours, push_base = [], []
        layer_dir = work / "layer-dir"
        for i in range(RUNS):
            ours = Registry(work / f"push-ours-{i}").start()
            try:
                subprocess.run([MIV, "remote", "add", "reg", f"oci://{ours.host}/bench", "--insecure", "--force"],
                               check=True,
                               env={**os.environ, **env}, capture_output=True)
                (db / "cache" / oci_layer_record(image_id)).unlink(missing_ok=True)
                push_ours.append(run_timed(f"{MIV} push reg big big:v1", env))
                if not layer_dir.exists():
                    subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false",
                                    f"docker://{ours.host}/bench/big:v1", f"dir:{layer_dir}"], check=True)
            finally:
                ours.stop()
                shutil.rmtree(work / f"push-ours-{i}")
            base = Registry(work / f"push-base-{i}").start()
            try:
                push_base.append(run_timed(f"skopeo copy -q --dest-tls-verify=false dir:{layer_dir} "
                                           f"docker://{base.host}/bench/big:v1", {}))
            finally:
                base.stop()
                shutil.rmtree(work / f"push-base-{i}")

        layer_bytes = max(f.stat().st_size for f in layer_dir.iterdir())
        registry = Registry(work / "pull").start()
        try:
            subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"dir:{layer_dir}",
                            f"docker://{registry.host}/bench/big:v1"], check=True)
            pull_ours, pull_base, rss = [], [], []
            for i in range(RUNS):
                fresh = work / f"pull{i}"
                fenv = {"MINIVIRT_DB_PATH": str(fresh)}
                subprocess.run([MIV, "remote", "add", "reg", f"oci://{registry.host}/bench", "--insecure"],
                               check=True, capture_output=True, env={**os.environ, **fenv})
                ours_run = run_timed(f"{MIV} pull reg big:v1 big", fenv)
                got = os.readlink(fresh / "images" / "big")
                assert got == image_id, "the pulled image has another id"
                pull_ours.append(ours_run)
                rss.append(ours_run.rss)
                shutil.rmtree(fresh)
                out = work / f"skopeo{i}"
                pull_base.append(run_timed(f"skopeo copy -q --src-tls-verify=false "
                                           f"docker://{registry.host}/bench/big:v1 dir:{out}", {}))
                shutil.rmtree(out)
        finally:
            registry.stop()
    all_runs = (pull_ours, pull_base, push_ours, push_base)
    po, pb, so, sb = (statistics.median(r.seconds for r in runs) for runs in all_runs)
    pco, pcb, co, cb = (statistics.median(r.cpu for r in runs) for runs in all_runs)
    mb = size_mib * 1.048576
    print(f"image {size_mib} MiB (half random, half zeros), {RUNS} runs each (interleaved), medians; "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (2 cores: above ~0.5 the machine "
          "is not quiet)")
    print(f"pull: miv {po:.2f} s ({mb / po:.0f} MB/s), skopeo copy docker:// dir: {pb:.2f} s; ratio {pb / po:.2f} "
          f"(target >= 0.9: {verdict(pb / po, 0.9, lower_is_better=False)})")
    print(f"pull: CPU (user + system) of miv {pco:.2f} s vs skopeo {pcb:.2f} s")
    peak = max(rss) / 1024
    print(f"pull: peak RSS {peak:.0f} MB (target <= 150 MB: {verdict(peak, 150)})")
    print(f"push: miv {so:.2f} s, skopeo copy dir: docker:// of the ready layer {sb:.2f} s; ratio {sb / so:.2f} "
          f"(target >= 0.8: {verdict(sb / so, 0.8, lower_is_better=False)})")
    print(f"push: CPU (user + system) of miv {co:.2f} s vs skopeo {cb:.2f} s; the layer is {layer_bytes / 1e6:.1f} MB "
          f"(skopeo sends the one miv made)")


if __name__ == "__main__":
    main()
