"""A small client of the OCI distribution spec on the standard library.

Why not oras-py: it downloads blobs to files through ``requests`` and checks digests
after the fact, with no Range resume, no streamed (chunked) upload of a blob whose
digest is only known at its end, and no progress callback; minivirt needs all four,
plus its own bounds (stall watchdog, size caps, redirects). The protocol itself is
small: manifests, blobs, uploads, tag listing, and the token flow.

Every answer is untrusted: small answers are read with a size cap, manifests are
checked against their digest, and the caller verifies blobs while they stream.
"""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.error
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlencode, urljoin, urlparse

from ..download import Cancelled, Watchdog, open_url, stall_limit, transient_sync
from ..errors import ExternalError, InvalidInput, NotFound
from ..imageid import BackgroundSha256
from .auth import Credentials, parse_challenge

MANIFEST_LIMIT = 4 << 20
SMALL_LIMIT = 4 << 20

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join((*MANIFESTS, *INDEXES))


class Response:
    """A finished exchange: status, headers, and the (bounded) body."""

    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class Registry:
    """One registry host, spoken to over HTTPS (or plain HTTP when ``insecure``)."""

    def __init__(self, host: str, insecure: bool, credentials: Credentials | None, name: str) -> None:
        self.host = host
        self.base = f"{'http' if insecure else 'https'}://{host}"
        self.credentials = credentials
        self.name = name  # the remote's name, for messages
        self._tokens: dict[str, str] = {}  # scope -> Authorization header value
        self._basic = False
        self._lock = threading.Lock()
        self._ensured: set[tuple[str, str]] = set()  # (repository, action) ensure_auth has done
        # Set: the request under way stops (its socket is shut down) and no other starts.
        self.cancel: threading.Event | None = None

    # Authentication -----------------------------------------------------------

    def auth_headers(self, scope: str) -> dict[str, str]:
        """The Authorization header known to work for ``scope`` (none yet: empty)."""
        with self._lock:
            if self._basic and self.credentials:
                return {"Authorization": self.credentials.basic()}
            token = self._tokens.get(scope)
        return {"Authorization": token} if token else {}

    def _authenticate(self, challenge_header: str | None, scope: str) -> bool:
        """Answer a 401's challenge (Basic, or the Bearer token flow); False when there is
        nothing more to try."""
        challenge = parse_challenge(challenge_header)
        if challenge is None:
            return False
        if challenge.scheme == "basic":
            if self.credentials is None or self._basic:
                return False
            self._basic = True
            return True
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            return False
        realm = challenge.params["realm"]
        if urlparse(realm).scheme not in ("http", "https"):
            raise InvalidInput(f"registry {self.host} names a token service that is not http(s)")
        # Our scope, and the one the registry named if it differs (both may be asked at once).
        params = [("scope", s) for s in dict.fromkeys((scope, challenge.params.get("scope", ""))) if s]
        if "service" in challenge.params:
            params.append(("service", challenge.params["service"]))
        headers = {"Authorization": self.credentials.basic()} if self.credentials else {}
        try:
            answer = self._exchange("GET", f"{realm}{'&' if '?' in realm else '?'}{urlencode(params)}",
                                    headers, limit=SMALL_LIMIT)
        except urllib.error.HTTPError as e:
            if e.code in (401, 403):
                raise self._refused(e.code) from e
            raise ExternalError(f"the token service of registry {self.host} answered HTTP {e.code}") from e
        try:
            value = json.loads(answer.body)
            token = value.get("token") or value.get("access_token")
        except (ValueError, AttributeError) as e:
            raise InvalidInput(f"the token service of registry {self.host} answered something not JSON") from e
        if not isinstance(token, str) or not token or not token.isprintable():
            raise InvalidInput(f"the token service of registry {self.host} gave no token")
        with self._lock:
            if self._tokens.get(scope) == f"Bearer {token}":
                return False  # the same token was refused already
            self._tokens[scope] = f"Bearer {token}"
        return True

    def _refused(self, status: int) -> ExternalError:
        if status == 403 or self.credentials is not None:
            what = "refused the credentials" if status == 401 else "denied access"
            return ExternalError(f"registry {self.host} {what} (HTTP {status})",
                                 hint=f"Check them: `miv registry login {self.host}` stores new ones "
                                      "(~/.docker/config.json is read too).")
        return ExternalError(f"registry {self.host} requires credentials (HTTP 401)",
                             hint=f"Log in with `miv registry login {self.host}` (or `docker login`).")

    # Requests -----------------------------------------------------------------

    def _exchange(self, method: str, url: str, headers: dict[str, str], data: Any = None,
                  limit: int = SMALL_LIMIT) -> Response:
        """One request; the body is read up to ``limit`` bytes (more is an error)."""
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled()
        watchdog = Watchdog(stall_limit(), self.cancel)
        try:
            if isinstance(data, Iterable) and not isinstance(data, (bytes, bytearray)):
                data = _counted(data, watchdog)
            with open_url(url, headers, watchdog, method=method, data=data) as response:
                body = b""
                if method != "HEAD":
                    while chunk := response.read1(1 << 20):
                        watchdog.moved(len(chunk))
                        body += chunk
                        if len(body) > limit:
                            raise InvalidInput(f"registry {self.host} sent an answer larger than {limit} bytes",
                                               hint="The registry misbehaves, or the remote points elsewhere.")
                return Response(response.status, response.headers, body)
        except urllib.error.HTTPError:
            raise
        except Exception as e:
            if self.cancel is not None and self.cancel.is_set():
                raise Cancelled() from e
            if watchdog.stalled:
                raise watchdog.error(url) from e
            if isinstance(e, (ExternalError, InvalidInput)):
                raise
            if transient_sync(e) or isinstance(e, OSError):
                raise ExternalError(f"cannot reach registry {self.host}: {_reason(e)}",
                                    hint="Check the remote's URL and that the registry runs; a registry on "
                                         "plain HTTP needs `miv remote add NAME oci://... --insecure`.") from e
            raise
        finally:
            watchdog.close()

    def request(self, method: str, path: str, scope: str, headers: dict[str, str] | None = None,
                data: Any = None, limit: int = SMALL_LIMIT, replayable: bool = True,
                missing: str | None = None) -> Response:
        """A request to the registry (``path`` relative to it, or a full URL it gave),
        authenticating as it asks. Error statuses become clear errors (404: ``missing``)."""
        url = urljoin(self.base + "/", path) if not path.startswith(("http://", "https://")) else path
        for attempt in range(3):
            try:
                return self._exchange(method, url, {**(headers or {}), **self.auth_headers(scope)}, data, limit)
            except urllib.error.HTTPError as e:
                challenge = e.headers.get("WWW-Authenticate") if e.headers else None
                e.close()
                if e.code == 401 and attempt < 2 and replayable and self._authenticate(challenge, scope):
                    continue
                if e.code in (401, 403):
                    raise self._refused(e.code) from e
                if e.code == 404 and missing:
                    raise NotFound(missing, hint=f"`miv remote ls {self.name}` lists what the registry has, "
                                                 "where it allows.") from e
                raise ExternalError(f"registry {self.host} answered HTTP {e.code} to {method} "
                                    f"{urlparse(url).path}") from e
        raise AssertionError("unreachable")

    def ensure_auth(self, repository: str, action: str) -> None:
        """Authenticate for ``repository`` before a request whose body cannot be sent twice
        (once per repository and action: what it learns is kept)."""
        if (repository, action) in self._ensured:
            return
        self.request("GET", "/v2/", self.scope(repository, action), missing="no registry API at /v2/")
        with self._lock:
            has = self._basic or self.scope(repository, action) in self._tokens
        if not has:  # /v2/ was open: the repository may still want a token
            try:
                self.request("HEAD", f"/v2/{repository}/blobs/sha256:{'0' * 64}", self.scope(repository, action))
            except ExternalError:
                pass
        self._ensured.add((repository, action))

    @staticmethod
    def scope(repository: str, action: str) -> str:
        return f"repository:{repository}:{action}"

    # The distribution API ------------------------------------------------------

    def manifest(self, repository: str, ref: str, missing: str) -> tuple[bytes, str, str]:
        """The manifest (or index) ``ref`` names: its bytes, media type and digest
        (checked against the digest the registry states, or that ``ref`` is)."""
        answer = self.request("GET", f"/v2/{repository}/manifests/{ref}", self.scope(repository, "pull"),
                              {"Accept": ACCEPT}, limit=MANIFEST_LIMIT, missing=missing)
        digest = "sha256:" + hashlib.sha256(answer.body).hexdigest()
        stated = ref if ref.startswith("sha256:") else answer.headers.get("Docker-Content-Digest")
        if stated and stated != digest:
            raise InvalidInput(f"registry {self.host}: the manifest of {repository}@{ref[:19]} does not match its "
                               "digest: nothing was downloaded",
                               hint="The registry (or something between) changed it.")
        try:
            value = json.loads(answer.body)
        except ValueError as e:
            raise InvalidInput(f"registry {self.host}: the manifest of {repository}:{ref[:19]} is not JSON") from e
        media = (value.get("mediaType") if isinstance(value, dict) else None) or \
            answer.headers.get("Content-Type", "").split(";")[0].strip()
        return answer.body, str(media), digest

    def blob_url(self, repository: str, digest: str) -> str:
        return f"{self.base}/v2/{repository}/blobs/{digest}"

    def small_blob(self, repository: str, digest: str, limit: int) -> bytes:
        """A small blob (an image config), verified."""
        answer = self.request("GET", f"/v2/{repository}/blobs/{digest}", self.scope(repository, "pull"),
                              limit=limit, missing=f"registry {self.host} lacks the blob {digest[:19]}...")
        if "sha256:" + hashlib.sha256(answer.body).hexdigest() != digest:
            raise InvalidInput(f"registry {self.host}: the blob {digest[:19]}... does not match its digest: "
                               "nothing was imported", hint="The registry (or something between) changed it.")
        return answer.body

    def has_blob(self, repository: str, digest: str) -> bool:
        try:
            self.request("HEAD", f"/v2/{repository}/blobs/{digest}", self.scope(repository, "pull,push"),
                         missing="absent")
            return True
        except NotFound:
            return False

    def upload(self, repository: str, data: bytes | Iterable[bytes], digest: str | None = None) -> tuple[str, int]:
        """Upload a blob; returns its digest and size. ``data`` as bytes (a config): a POST,
        then one PUT with the body and its digest. As pieces (a layer): streamed in one
        chunked PATCH while a helper thread hashes them, then the PUT names the digest."""
        scope = self.scope(repository, "pull,push")
        self.ensure_auth(repository, "pull,push")
        start = self.request("POST", f"/v2/{repository}/blobs/uploads/", scope, {"Content-Length": "0"}, b"")
        location = _location(self, start)
        if isinstance(data, (bytes, bytearray)):
            got = "sha256:" + hashlib.sha256(data).hexdigest()
            if digest and got != digest:
                raise InvalidInput(f"the blob to upload does not match its digest ({got[:19]}...)")
            self.request("PUT", _with_digest(location, got), scope, {"Content-Type": "application/octet-stream"},
                         bytes(data))
            return got, len(data)
        size = 0
        with BackgroundSha256() as hasher:

            def pieces() -> Iterator[bytes]:
                nonlocal size
                for piece in data:
                    hasher.update(piece)
                    size += len(piece)
                    yield piece

            patched = self.request("PATCH", location, scope, {"Content-Type": "application/octet-stream"},
                                   pieces(), replayable=False)
            got = "sha256:" + hasher.hexdigest()
        if digest and got != digest:
            raise InvalidInput(f"the blob to upload changed while it was read ({got[:19]}...)")
        self.request("PUT", _with_digest(_location(self, patched), got), scope, {"Content-Length": "0"}, b"")
        return got, size

    def put_manifest(self, repository: str, ref: str, body: bytes, media_type: str) -> None:
        self.request("PUT", f"/v2/{repository}/manifests/{ref}", self.scope(repository, "pull,push"),
                     {"Content-Type": media_type}, body)

    def tags(self, repository: str) -> list[str]:
        answer = self.request("GET", f"/v2/{repository}/tags/list?n=1000", self.scope(repository, "pull"),
                              missing=f"registry {self.host} has no repository {repository}")
        return _strings(answer.body, "tags")

    def catalog(self) -> list[str]:
        """The repositories (``/v2/_catalog``), where the registry allows it."""
        answer = self.request("GET", "/v2/_catalog?n=1000", "registry:catalog:*",
                              missing=f"registry {self.host} does not list its repositories")
        return _strings(answer.body, "repositories")


def _counted(data: Iterable[bytes], watchdog: Watchdog) -> Iterator[bytes]:
    for piece in data:
        yield piece
        watchdog.moved(len(piece))


def _location(registry: Registry, answer: Response) -> str:
    location = answer.headers.get("Location")
    if not location:
        raise ExternalError(f"registry {registry.host} started an upload but gave no Location")
    url = urljoin(registry.base + "/", location)
    if urlparse(url).scheme not in ("http", "https"):
        raise InvalidInput(f"registry {registry.host} gave an upload location that is not http(s)")
    return url


def _with_digest(location: str, digest: str) -> str:
    return f"{location}{'&' if '?' in location else '?'}{urlencode({'digest': digest})}"


def _strings(body: bytes, key: str) -> list[str]:
    try:
        value = json.loads(body)
    except ValueError as e:
        raise InvalidInput(f"the registry's {key} list is not JSON") from e
    items = value.get(key) if isinstance(value, dict) else None
    return [s for s in items or [] if isinstance(s, str)] if isinstance(items, list) else []


def _reason(e: BaseException) -> str:
    reason = getattr(e, "reason", e)
    return getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
