"""A configured remote (name, URL, kind) and the results of transfers with it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from ..download import shown_url
from ..errors import InvalidInput

if TYPE_CHECKING:
    from ..images import Image

OCI_SCHEMES = ("oci", "oci+http")  # oci+http: plain HTTP (`miv remote add ... --insecure`)


@dataclass(frozen=True)
class Remote:
    """A named repository URL (validated; else ``url`` is shown redacted and ``problem``
    says what is wrong with the one in ``remotes.json``)."""

    name: str
    url: str
    problem: str | None = None
    previous: str | None = None  # on what add returns: the URL it replaced (None: a new name)

    @property
    def kind(self) -> str:
        """``s3`` (an http(s) URL: anonymous pull, S3 push), ``file``, or ``oci`` (a registry)."""
        scheme = self.url.partition("://")[0]
        if scheme == "file":
            return "file"
        return "oci" if scheme in OCI_SCHEMES else "s3"

    @property
    def folder(self) -> Path:
        """The folder of a ``file://`` remote."""
        return Path(unquote(urlparse(self.url).path))

    @property
    def bucket(self) -> str:
        """The S3 bucket: the last path segment of the URL."""
        path = urlparse(self.url).path.rstrip("/")
        return path.rsplit("/", 1)[-1]

    @property
    def insecure(self) -> bool:
        """An OCI registry spoken to over plain HTTP."""
        return self.url.startswith("oci+http://")

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "url": self.url, "kind": self.kind}


@dataclass(frozen=True)
class PullResult:
    image: Image
    downloaded: bool  # False when the image was already here
    bytes: int = 0


@dataclass(frozen=True)
class PushResult:
    image_id: str
    uploaded: bool  # False when the remote had the image already
    bytes: int = 0


CREDENTIALS_HINT = ("Credentials are never stored in remotes.json: pulls are anonymous, push to S3 takes "
                    "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL) from the environment, "
                    "and registries take `miv registry login` or ~/.docker/config.json.")


def validate_url(url: str, insecure: bool = False) -> str:
    """Accept ``http(s)://host/.../bucket``, ``file:///path`` and ``oci://host[:port]/namespace``
    (stored as ``oci+http://`` when ``insecure``); else a clear error (that never shows
    credentials)."""
    shown = shown_url(url)
    if not url.isprintable() or any(c.isspace() for c in url):
        raise InvalidInput(f"invalid remote URL {shown!r}: it contains a space or a control character",
                           hint="Write a space in a URL as %20.")
    parsed = urlparse(url)
    if "@" in parsed.netloc:
        raise InvalidInput(f"invalid remote URL {shown!r}: it holds credentials", hint=CREDENTIALS_HINT)
    if parsed.query or parsed.fragment or "?" in url or "#" in url:
        raise InvalidInput(f"invalid remote URL {shown!r}: a remote URL has no query or fragment ('?', '#')")
    if insecure and parsed.scheme != "oci":
        raise InvalidInput("--insecure is for oci:// remotes (a registry spoken to over plain HTTP)")
    if parsed.scheme in ("http", "https", *OCI_SCHEMES):
        try:
            parsed.port  # noqa: B018 - raises on a bad port
        except ValueError as e:
            raise InvalidInput(f"invalid remote URL {shown!r}: {e}") from e
        if parsed.scheme in OCI_SCHEMES:
            from ..oci.reference import validate_namespace

            if not parsed.hostname:
                raise InvalidInput(f"invalid remote URL {shown!r}: it must name the registry",
                                   hint="e.g. oci://quay.io/containerdisks")
            validate_namespace(parsed.path.strip("/"), shown)
            scheme = "oci+http" if insecure or parsed.scheme == "oci+http" else "oci"
            path = parsed.path.strip("/")
            return f"{scheme}://{parsed.netloc.lower()}{'/' + path if path else ''}"
        if not parsed.hostname or not parsed.path.strip("/"):
            raise InvalidInput(
                f"invalid remote URL {shown!r}: it must end in the bucket name",
                hint="e.g. https://s3.example.com/my-bucket",
            )
        return url.rstrip("/")
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
            raise InvalidInput(f"invalid remote URL {shown!r}: write file:///absolute/path",
                               hint="file://NAME/... would name a host; a remote folder is an absolute path.")
        return url.rstrip("/") if parsed.path != "/" else url
    raise InvalidInput(f"invalid remote URL {shown!r}: use http://, https://, file:// or oci://")


def parse(name: str, url: str) -> Remote:
    """A remote as ``remotes.json`` has it: validated, or redacted with its problem."""
    try:
        return Remote(name, validate_url(url))
    except InvalidInput as e:
        return Remote(name, shown_url(url), problem=e.message)
