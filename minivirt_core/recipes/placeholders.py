"""``{arch}``, ``{vagrant_pubkey}`` and ``{vagrant_pubkey_url}`` in recipe text.

Only these exact tokens are replaced, so JSON, ``${VAR}`` and any other braces in a
recipe pass through untouched (``str.format`` would choke on them).
"""

from __future__ import annotations

from ..hostinfo import host_arch

VAGRANT_PUBKEY_URL = "https://raw.githubusercontent.com/hashicorp/vagrant/master/keys/vagrant.pub"


def fill(text: str, arch: str | None = None) -> str:
    """``text`` with the placeholders filled in; ``{arch}`` is ``arch`` (the architecture
    being built), else the host's."""
    if "{" not in text:
        return text
    from ..ssh import public_key_text

    values = {
        "{arch}": arch or host_arch(),
        "{vagrant_pubkey}": public_key_text(),
        "{vagrant_pubkey_url}": VAGRANT_PUBKEY_URL,
    }
    for token, value in values.items():
        text = text.replace(token, value)
    return text
