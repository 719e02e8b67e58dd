"""Pull and push of a ~200 MB image over loopback, against baselines in the same run.

- pull: `miv pull` (download + gunzip + member checks + id verification + write) vs
  `curl -s URL | tar xz` of the same object. Target: throughput ratio >= 0.9, and peak
  RSS of `miv pull` <= 150 MB.
- push: `miv push` (tar + gzip in parallel + multipart upload, no temp file) vs boto3
  `upload_file` of a ready .tgz, each as a command a person runs (a process that imports
  boto3, makes a client and uploads: that start-up alone is ~0.6 s here). Target: ratio
  >= 0.8. The in-process upload_file time (client already made) is printed too.
Server: SeaweedFS (`weed mini`) on 127.0.0.1, started here.
Run: .venv/bin/python bench/remote_transfer.py [SIZE_MIB]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import MIV, ROOT, half_random_image, run_timed, verdict

sys.path.insert(0, str(ROOT))

from tests.s3server import S3Server

RUNS = 5  # loopback with the server on the same 2 cores is noisy: medians of 5


def main() -> None:
    size_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        server = S3Server(work / "s3").start()
        try:
            src = half_random_image(work, size_mib)
            db = work / "db"
            env = {"MINIVIRT_DB_PATH": str(db), **server.env}
            subprocess.run(f"tar c -C {src} config.json disk.qcow2 | {MIV} load big", shell=True, check=True,
                           env={**os.environ, **env}, capture_output=True)
            subprocess.run([MIV, "remote", "add", "sw", server.url()], check=True, env={**os.environ, **env})
            image_id = os.readlink(db / "images" / "big")
            tgz = work / "big.tgz"
            subprocess.run(f"{MIV} save big | gzip -1 > {tgz}", shell=True, check=True, env={**os.environ, **env})
            tgz_bytes = tgz.stat().st_size
            s3 = server.client()

            push_ours, push_base, push_inproc = [], [], []
            upload = (f"{sys.executable} -c \"import boto3; boto3.client('s3').upload_file('{tgz}', 'minivirt', "
                      f"'baseline/$RANDOM.tgz')\"")
            for i in range(RUNS):
                s3.delete_object(Bucket="minivirt", Key=f"images/{image_id}.tgz")
                push_ours.append(run_timed(f"{MIV} push sw big big", env))
                push_base.append(run_timed(upload, env))
                start = time.perf_counter()
                s3.upload_file(str(tgz), "minivirt", f"inproc/{i}.tgz")
                push_inproc.append(time.perf_counter() - start)

            sent = s3.head_object(Bucket="minivirt", Key=f"images/{image_id}.tgz")["ContentLength"]
            pull_ours, pull_base, rss = [], [], []
            url = f"{server.url()}/images/{image_id}.tgz"
            for i in range(RUNS):
                fresh = work / f"pull{i}"
                subprocess.run([MIV, "remote", "add", "sw", server.url()], check=True, capture_output=True,
                               env={**os.environ, "MINIVIRT_DB_PATH": str(fresh)})
                run = run_timed(f"{MIV} pull sw big", {"MINIVIRT_DB_PATH": str(fresh)})
                pull_ours.append(run.seconds)
                rss.append(run.rss)
                shutil.rmtree(fresh)
                out = work / f"curl{i}"
                out.mkdir()
                pull_base.append(run_timed(f"curl -s {url} | tar xz -C {out}", {}).seconds)
                shutil.rmtree(out)
        finally:
            server.stop()
    mb = size_mib * 1.048576
    po, pb = statistics.median(pull_ours), statistics.median(pull_base)
    so, sb = (statistics.median(r.seconds for r in runs) for runs in (push_ours, push_base))
    co, cb = (statistics.median(r.cpu for r in runs) for runs in (push_ours, push_base))
    print(f"image {size_mib} MiB (tgz {tgz_size_note(size_mib)})")
    print(f"pull: miv {po:.2f} s ({mb / po:.0f} MB/s), curl | tar xz {pb:.2f} s; ratio {pb / po:.2f} "
          f"(target >= 0.9: {verdict(pb / po, 0.9, lower_is_better=False)})")
    peak = max(rss) / 1024
    print(f"pull: peak RSS {peak:.0f} MB (target <= 150 MB: {verdict(peak, 150)})")
    print(f"push: miv {so:.2f} s, a boto3 upload_file command of a ready .tgz {sb:.2f} s; ratio {sb / so:.2f} "
          f"(target >= 0.8: {verdict(sb / so, 0.8, lower_is_better=False)}); "
          f"upload_file in-process, client already made: {statistics.median(push_inproc):.2f} s")
    print(f"push: CPU (user + system) of miv {co:.2f} s vs the upload_file command {cb:.2f} s; miv sent "
          f"{sent / 1e6:.1f} MB, the ready .tgz (gzip -1) is {tgz_bytes / 1e6:.1f} MB")


def tgz_size_note(size_mib: int) -> str:
    return f"about {size_mib // 2} MiB: half random, half zeros"


if __name__ == "__main__":
    main()
