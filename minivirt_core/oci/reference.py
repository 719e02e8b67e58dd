"""Names in a registry: a remote's namespace, a remote tag ``NAME[:TAG]``, the repository
and tag they make (grammar of the OCI distribution spec)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InvalidInput, InvalidName
from ..remotes.layout import OCI_DEFAULT_TAG

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
MAX_NAME = 255


HOST_RE = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]{1,5})?|\[[0-9a-fA-F:]+\](?::[0-9]{1,5})?")


def validate_host(host: str) -> str:
    """A registry host as ``miv registry login`` takes it: ``name[:port]``."""
    if not HOST_RE.fullmatch(host):
        raise InvalidInput(f"invalid registry host {host[:60]!r}", hint="e.g. ghcr.io or localhost:5000")
    return host


def validate_namespace(namespace: str, shown: str) -> str:
    """A remote's namespace (may be empty: repositories at the registry's top)."""
    if namespace and (not NAME_RE.fullmatch(namespace) or len(namespace) > MAX_NAME):
        raise InvalidInput(f"invalid remote URL {shown!r}: {namespace[:60]!r} is not a registry namespace",
                           hint="Lowercase letters, digits and . _ - separated by '/', e.g. oci://quay.io/containerdisks")
    return namespace


@dataclass(frozen=True)
class Reference:
    """A repository and a tag in it."""

    repository: str
    tag: str

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}"


def parse_remote_tag(text: str) -> tuple[str, str]:
    """``NAME[:TAG]`` -> (name, tag), validated (``InvalidName`` with a hint otherwise)."""
    name, _, tag = text.rpartition(":") if ":" in text else (text, "", OCI_DEFAULT_TAG)
    if not name or not NAME_RE.fullmatch(name) or len(name) > MAX_NAME:
        raise InvalidName(f"invalid image name {name[:60]!r} for a registry",
                          hint="A registry image is NAME[:TAG]: lowercase letters, digits, '.', '_', '-', and "
                               "'/' between parts, e.g. fedora:40.")
    if not TAG_RE.fullmatch(tag):
        raise InvalidName(f"invalid registry tag {tag[:60]!r}",
                          hint="A tag is up to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'.")
    return name, tag


def reference(namespace: str, remote_tag: str) -> Reference:
    """The repository and tag that the remote tag ``NAME[:TAG]`` names under ``namespace``."""
    name, tag = parse_remote_tag(remote_tag)
    repository = f"{namespace}/{name}" if namespace else name
    if len(repository) > MAX_NAME:
        raise InvalidName(f"the repository name {repository[:40]!r}... is longer than {MAX_NAME} characters")
    return Reference(repository, tag)
