"""A real HTTP server on 127.0.0.1 for the tests: static files with Range support.

It can be told to cut a response half-way (closing the connection), to misbehave the
ways hostile or broken servers do (an endless body after the file, a drip of one byte
at a time, a redirect anywhere), and it records every request's path and Range header
and the bytes it sent, so tests can check what a client read.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Request:
    path: str
    range: str | None


@dataclass
class StaticServer:
    root: Path
    requests: list[Request] = field(default_factory=list)
    cut_after: dict[str, int] = field(default_factory=dict)  # path -> bytes to send, once
    throttle: float = 0.0  # seconds to sleep per 64 KiB sent (0: full speed)
    endless: dict[str, tuple[bytes, bool]] = field(default_factory=dict)  # path -> (block sent for ever after
    # the file, whether to announce a huge Content-Length instead of ending with the close)
    drip: dict[str, float] = field(default_factory=dict)  # path -> seconds between single bytes
    redirects: dict[str, str] = field(default_factory=dict)  # path -> Location of a 302
    sent: dict[str, int] = field(default_factory=dict)  # path -> body bytes sent (all requests)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> StaticServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                owner.requests.append(Request(path, self.headers.get("Range")))
                if path in owner.redirects:
                    self.send_response(302)
                    self.send_header("Location", owner.redirects[path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                file = owner.root / path.lstrip("/")
                if not file.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                size = file.stat().st_size
                start = 0
                status = 200
                if (rng := self.headers.get("Range")) and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                    if start >= size:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{size}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                if path in owner.endless:
                    self._endless(path, file.read_bytes()[start:], *owner.endless[path])
                    return
                if path in owner.drip:
                    self._drip(path, file.read_bytes()[start:], owner.drip[path])
                    return
                self.send_response(status)
                self.send_header("Content-Length", str(size - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                limit = owner.cut_after.pop(path, None)
                with open(file, "rb") as f:
                    f.seek(start)
                    sent = 0
                    while chunk := f.read(1 << 16):
                        if limit is not None and sent + len(chunk) > limit:
                            self.wfile.write(chunk[: limit - sent])
                            self.wfile.flush()
                            self.close_connection = True
                            self.connection.shutdown(2)
                            return
                        try:
                            self.wfile.write(chunk)
                        except (BrokenPipeError, ConnectionResetError):
                            return
                        sent += len(chunk)
                        owner.sent[path] = owner.sent.get(path, 0) + len(chunk)
                        if owner.throttle:
                            time.sleep(owner.throttle)

            def _endless(self, path: str, data: bytes, junk: bytes, announced: bool) -> None:
                """The file, then ``junk`` again and again until the client goes away: with
                a huge Content-Length, or none (the end would be the close)."""
                self.send_response(200)
                if announced:
                    self.send_header("Content-Length", str(1 << 40))
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                try:
                    self.wfile.write(data)
                    owner.sent[path] = owner.sent.get(path, 0) + len(data)
                    while True:
                        self.wfile.write(junk)
                        owner.sent[path] += len(junk)
                except OSError:
                    return

            def _drip(self, path: str, data: bytes, interval: float) -> None:
                """The file, one byte every ``interval`` seconds."""
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    for i in range(len(data)):
                        self.wfile.write(data[i : i + 1])
                        self.wfile.flush()
                        owner.sent[path] = owner.sent.get(path, 0) + 1
                        time.sleep(interval)
                except OSError:
                    return

            def do_HEAD(self) -> None:
                self.send_response(405)
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def put(self, relpath: str, data: bytes) -> str:
        """Serve ``data`` at ``relpath``; returns its URL."""
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return f"{self.url}/{relpath}"


def random_bytes(n: int) -> bytes:
    return os.urandom(n)
