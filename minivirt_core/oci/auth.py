"""Registry credentials and tokens.

Credentials for a registry host come from ``miv registry login`` (the database's
``registry-auth.json``, 0600) or, failing that, from the user's Docker config
(``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``, its ``auths``; credential
helpers are not run). They are sent as Basic credentials to a registry that asks for them,
or to a token endpoint (``WWW-Authenticate: Bearer realm=...``) for a token; without any,
the token flow is anonymous, as public registries allow for pulls. Nothing here ever
prints a credential.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidInput

AUTH_FILE_LIMIT = 1 << 20


@dataclass(frozen=True)
class Credentials:
    """A user name and password (or token) for one registry; never shown."""

    username: str
    password: str = field(repr=False)

    def basic(self) -> str:
        """The ``Authorization`` header value for Basic auth."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def docker_config_path() -> Path:
    """Where the Docker CLI keeps its config (``$DOCKER_CONFIG`` or ``~/.docker``)."""
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"


def _read_json(path: Path) -> dict[str, object]:
    try:
        with open(path, "rb") as f:
            data = f.read(AUTH_FILE_LIMIT + 1)
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise InvalidInput(f"{path} cannot be read: {e.strerror}") from e
    try:
        value = json.loads(data)
    except ValueError as e:
        raise InvalidInput(f"{path} is not valid JSON", hint="Fix or remove the file.") from e
    return value if isinstance(value, dict) else {}


def _entry_credentials(entry: object) -> Credentials | None:
    """Credentials from one ``auths`` entry: ``{"auth": base64("user:pass")}`` or
    ``{"username": ..., "password": ...}``; None when it holds neither."""
    if not isinstance(entry, dict):
        return None
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            user, sep, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return Credentials(user, password) if sep else None
    name, secret = entry.get("username"), entry.get("password")
    if isinstance(name, str) and isinstance(secret, str):
        return Credentials(name, secret)
    return None


def _host_of(key: str) -> str:
    """The host[:port] an ``auths`` key names (keys may be URLs: ``https://index.docker.io/v1/``)."""
    key = re.sub(r"^[a-z]+://", "", key.strip().lower())
    return key.split("/", 1)[0]


def _lookup(auths: object, host: str) -> Credentials | None:
    if not isinstance(auths, dict):
        return None
    host = host.lower()
    for key, entry in auths.items():
        if isinstance(key, str) and _host_of(key) == host and (found := _entry_credentials(entry)):
            return found
    return None


class CredentialStore:
    """``miv registry login`` credentials (a 0600 file in the database), then Docker's."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def get(self, host: str) -> Credentials | None:
        """The credentials for ``host`` (``name[:port]``), or None (anonymous)."""
        return _lookup(_read_json(self.path).get("auths"), host) or \
            _lookup(_read_json(docker_config_path()).get("auths"), host)

    def login(self, host: str, credentials: Credentials) -> None:
        """Store ``credentials`` for ``host`` (the file is written 0600, staged and renamed)."""
        from ..fsutil import atomic_write_bytes

        value = _read_json(self.path)
        auths = value.get("auths") if isinstance(value.get("auths"), dict) else {}
        assert isinstance(auths, dict)
        raw = f"{credentials.username}:{credentials.password}".encode()
        auths[host.lower()] = {"auth": base64.b64encode(raw).decode("ascii")}
        value["auths"] = auths
        atomic_write_bytes(self.path, json.dumps(value, indent=1, sort_keys=True).encode(), 0o600)

    def logout(self, host: str) -> bool:
        """Forget ``host``'s credentials; False when there were none."""
        from ..fsutil import atomic_write_bytes

        value = _read_json(self.path)
        auths = value.get("auths")
        if not isinstance(auths, dict) or host.lower() not in auths:
            return False
        del auths[host.lower()]
        atomic_write_bytes(self.path, json.dumps(value, indent=1, sort_keys=True).encode(), 0o600)
        return True


_PARAM = re.compile(r'([A-Za-z_]+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


@dataclass(frozen=True)
class Challenge:
    """A ``WWW-Authenticate`` challenge: ``Basic`` or ``Bearer`` with its parameters."""

    scheme: str
    params: dict[str, str]


def parse_challenge(header: str | None) -> Challenge | None:
    """The challenge of a 401's ``WWW-Authenticate`` header, or None."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3) for m in _PARAM.finditer(rest)}
    return Challenge(scheme.lower(), params)
