"""Real OCI registries for the tests: Debian's ``docker-registry`` (CNCF distribution 2.8)
on 127.0.0.1, anonymous, with htpasswd Basic auth, or with token auth backed by a small
token server here that issues real signed tokens (RS256 JWTs with an x5c certificate
chain) the registry verifies against its root certificate bundle."""

from __future__ import annotations

import base64
import datetime
import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

USER = "alice"
PASSWORD = "correct-horse-battery"
SERVICE = "minivirt-test-registry"
ISSUER = "minivirt-test-issuer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenServer:
    """Issues tokens: anonymous callers get pull, alice gets pull and push, wrong
    credentials get 401. Records the scopes asked for."""

    folder: Path
    asked: list[tuple[str | None, list[str]]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> TokenServer:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
        from cryptography.x509.oid import NameOID

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "minivirt test token signer")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        self.cert_path = self.folder / "token-cert.pem"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        owner = self

        def token(user: str | None, scopes: list[str]) -> str:
            access = []
            for scope in scopes:
                kind, _, rest = scope.partition(":")
                target, _, actions = rest.rpartition(":")
                wanted = actions.split(",")
                allowed = [a for a in wanted if a in (("pull", "push", "*") if user else ("pull", "*"))]
                access.append({"type": kind, "name": target, "actions": allowed})
            t = int(time.time())
            header = {"typ": "JWT", "alg": "RS256", "x5c": [x5c]}
            claims = {"iss": ISSUER, "sub": user or "", "aud": SERVICE, "exp": t + 600, "nbf": t - 60, "iat": t,
                      "jti": os.urandom(8).hex(), "access": access}
            signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
            signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
            return f"{signing_input}.{_b64(signature)}"

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                query = parse_qs(urlparse(self.path).query)
                user = None
                auth = self.headers.get("Authorization")
                if auth:
                    raw = base64.b64decode(auth.split(" ", 1)[1]).decode()
                    if raw != f"{USER}:{PASSWORD}":
                        self.send_response(401)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    user = USER
                scopes = query.get("scope", [])
                owner.asked.append((user, scopes))
                body = json.dumps({"token": token(user, scopes), "expires_in": 600}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def realm(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@dataclass
class Registry:
    """``docker-registry serve`` on 127.0.0.1 with its own storage; ``auth`` is ``None``,
    ``"htpasswd"`` or ``"token"``."""

    folder: Path
    auth: str | None = None
    port: int = 0
    tokens: TokenServer | None = None
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def storage(self) -> Path:
        return self.folder / "storage"

    def start(self) -> Registry:
        import bcrypt

        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config: dict[str, object] = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)}, "delete": {"enabled": True}},
            "http": {"addr": self.host, "secret": os.urandom(8).hex()},
        }
        if self.auth == "htpasswd":
            hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
            (self.folder / "htpasswd").write_text(f"{USER}:{hashed}\n")
            config["auth"] = {"htpasswd": {"realm": "minivirt-test", "path": str(self.folder / "htpasswd")}}
        elif self.auth == "token":
            self.tokens = TokenServer(self.folder).start()
            config["auth"] = {"token": {"realm": self.tokens.realm, "service": SERVICE, "issuer": ISSUER,
                                        "rootcertbundle": str(self.tokens.cert_path)}}
        (self.folder / "config.yml").write_text(json.dumps(config))
        log = open(self.folder / "registry.log", "wb")  # noqa: SIM115 - the process keeps it
        self._proc = subprocess.Popen(["docker-registry", "serve", str(self.folder / "config.yml")],
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2).close()
                break
            except urllib.error.HTTPError:
                break  # 401: up, wants credentials
            except OSError as e:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    log_text = (self.folder / "registry.log").read_text()
                    raise RuntimeError(f"docker-registry did not start: {log_text}") from e
                time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self.tokens is not None:
            self.tokens.stop()

    def blobs(self) -> set[str]:
        """The digests of every blob the registry stores."""
        root = self.storage / "docker/registry/v2/blobs/sha256"
        return {f"sha256:{p.name}" for p in root.glob("*/*") if (p / "data").exists()} if root.exists() else set()
