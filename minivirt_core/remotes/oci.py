"""OCI registries (``oci://HOST[:PORT]/NAMESPACE``): pull containerDisks, ORAS-style
qcow2 artifacts and minivirt's own pushes; push KubeVirt containerDisks.

A remote tag ``NAME[:TAG]`` is the repository ``NAMESPACE/NAME``, tag ``TAG`` (default
``latest``). A tag holding an image index gives the host's platform. Push writes the
layer (``disk/disk.qcow2``, 107:107, gzip) streamed as it is compressed, then the image
config (os, architecture, ``rootfs.diff_ids``, minivirt's config and image id as labels),
then the manifest; a blob the registry has is not sent again (the layer's digest is
remembered per image in the cache). Pushing another architecture under a tag that holds
one makes (or extends) an image index.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .. import layout as db_layout
from ..archive import ProgressCallback
from ..download import HttpStatusError, in_thread, stream_body
from ..errors import ExternalError, InvalidInput, NotFound
from ..fsutil import atomic_write_json
from ..images import Image
from ..names import is_image_id
from ..oci import client as oci
from ..oci.auth import CredentialStore
from ..oci.containerdisk import SniffingImporter, layer_size, layer_tar
from ..oci.reference import DIGEST_RE, Reference, parse_remote_tag, reference
from . import layout
from .compress import PIECE, compress_pieces
from .remote import PushResult
from .tags import valid_tags
from .transport import Importer, RemoteImage, Sink, Transport

OCI_ARCH = layout.OCI_ARCH
MINIVIRT_ARCH = {v: k for k, v in OCI_ARCH.items()}
CONFIG_LIMIT = 1 << 20


def credential_store(cache_dir: Path) -> CredentialStore:
    """The credentials of the database whose cache folder is ``cache_dir`` (``miv registry
    login``'s, then Docker's)."""
    return CredentialStore(cache_dir.parent / db_layout.REGISTRY_AUTH)


async def check_login(host: str, credentials: Any, insecure: bool) -> None:
    """Raise unless registry ``host`` accepts ``credentials`` (its ``/v2/`` endpoint,
    through Basic or the token flow)."""
    from ..oci.reference import validate_host

    validate_host(host)
    registry = oci.Registry(host, insecure, credentials, host)
    await asyncio.to_thread(registry.request, "GET", "/v2/", "", missing=f"{host} has no registry API at /v2/")


class OciTransport(Transport):
    """A namespace of an OCI registry."""

    def __init__(self, remote: Any, cache_dir: Path) -> None:
        super().__init__(remote, cache_dir)
        parsed = urlparse(remote.url)
        self.host = parsed.netloc
        self.namespace = parsed.path.strip("/")
        self.registry = oci.Registry(self.host, remote.insecure, credential_store(cache_dir).get(self.host),
                                     remote.name)

    def check_tag(self, tag: str) -> str:
        parse_remote_tag(tag)
        return tag

    def _ref(self, tag: str) -> Reference:
        return reference(self.namespace, tag)

    # Pull -----------------------------------------------------------------------

    async def resolve(self, tag: str) -> RemoteImage:
        return await asyncio.to_thread(self._resolve, tag)

    def _resolve(self, tag: str) -> RemoteImage:
        ref = self._ref(tag)
        missing = f"{ref} not found on registry {self.host}"
        body, media, _ = self.registry.manifest(ref.repository, ref.tag, missing)
        manifest = _json(body, "manifest")
        if media in oci.INDEXES or "manifests" in manifest:
            chosen = _platform(manifest, self.arch, f"{ref}")
            body, media, _ = self.registry.manifest(ref.repository, chosen, missing)
            manifest = _json(body, "manifest")
        if media not in oci.MANIFESTS and "layers" not in manifest:
            raise InvalidInput(f"{ref} on registry {self.host} is not an image manifest ({media[:60]!r})")
        config_desc = _descriptor(manifest.get("config"), "config")
        layers = manifest.get("layers")
        if not isinstance(layers, list) or len(layers) != 1:
            count = len(layers) if isinstance(layers, list) else 0
            raise InvalidInput(f"{ref} on registry {self.host} has {count} layers: a containerDisk has one",
                               hint="minivirt pulls containerDisks (one layer with disk/) and qcow2 artifacts.")
        layer = _descriptor(layers[0], "layer")
        if config_desc["size"] > CONFIG_LIMIT:
            raise InvalidInput(f"{ref}: its image config claims {config_desc['size']} bytes (limit {CONFIG_LIMIT})")
        config = _json(self.registry.small_blob(ref.repository, config_desc["digest"], CONFIG_LIMIT), "config")
        image_id, config_json = _minivirt_labels(config, ref)
        arch = MINIVIRT_ARCH.get(str(config.get("architecture")))
        if config_json is None:
            from ..imageconfig import ImageConfig

            config_json = ImageConfig(disk=True, iso=None, arch=arch).to_json()
        media_type = str(layer.get("mediaType", ""))
        if media_type.endswith("+zstd"):
            raise InvalidInput(f"{ref}: its layer is zstd-compressed, which minivirt does not read",
                               hint="Push it with gzip compression.")
        return RemoteImage(image_id, key=f"oci-{layer['digest'][7:]}", digest=layer["digest"], size=layer["size"],
                           details={"repository": ref.repository, "config": config_json})

    def download(self, image: RemoteImage, part: Path | None, sink: Sink, progress: ProgressCallback | None,
                 cancel: threading.Event, done: Callable[[], bool]) -> None:
        assert part is not None and image.digest
        repository = image.details["repository"]
        scope = self.registry.scope(repository, "pull")
        if not self.registry.auth_headers(scope):
            self.registry.ensure_auth(repository, "pull")
        try:
            stream_body(self.registry.blob_url(repository, image.digest), part, sink, progress, cancel, done=done,
                        headers=lambda: self.registry.auth_headers(scope))
        except HttpStatusError as e:
            if e.status == 404:
                raise NotFound(f"registry {self.host} lacks the layer {image.digest[:19]}... of {repository}") from e
            if e.status in (401, 403):
                raise ExternalError(f"registry {self.host} refused the layer download (HTTP {e.status})",
                                    hint=f"`miv registry login {self.host}`") from e
            raise

    def importer(self, image: RemoteImage, dest: Path) -> Importer:
        return SniffingImporter(dest, image.details["config"], int(image.size or 0))

    # Push -----------------------------------------------------------------------

    async def write(self, image: Image, tag: str, progress: ProgressCallback | None) -> PushResult:
        """Push on a thread; cancelling stops it wherever it is (a request under way is cut
        off, none starts after): a cancelled push never writes the tag."""
        return await in_thread(lambda cancel: self._push(image, tag, progress, cancel))

    def _push(self, image: Image, tag: str, progress: ProgressCallback | None,
              cancel: threading.Event) -> PushResult:
        self.registry.cancel = cancel
        ref = self._ref(tag)
        config = image.config
        if config.iso:
            raise InvalidInput(f"image {image.label} has an ISO; a containerDisk holds only a disk",
                               hint="Push it to a folder or S3 remote instead.")
        disk = image.path / db_layout.IMAGE_DISK
        registry = self.registry
        registry.ensure_auth(ref.repository, "pull,push")
        record_path = self.cache_dir / db_layout.oci_layer_record(image.id)
        record = _read_record(record_path)
        uploaded = False
        written = 0
        if record is None or not registry.has_blob(ref.repository, record["digest"]):
            diff = _Hashing()
            total = layer_size(disk)
            with closing(compress_pieces(diff.wrap(layer_tar(disk, PIECE)), total, progress)) as members:
                digest, size = registry.upload(ref.repository, members)
            record = {"digest": digest, "size": size, "diff_id": diff.digest()}
            self.cache_dir.mkdir(exist_ok=True)
            atomic_write_json(record_path, record)
            uploaded = True
            written = size
        arch = image.arch
        labels = {layout.LABEL_CONFIG: (image.path / db_layout.IMAGE_CONFIG).read_bytes().decode(),
                  layout.LABEL_IMAGE_ID: image.id}
        config_blob = json.dumps({
            "architecture": OCI_ARCH.get(arch, arch), "os": "linux",
            "config": {"Labels": labels},
            "rootfs": {"type": "layers", "diff_ids": [record["diff_id"]]},
        }, sort_keys=True).encode()
        config_digest = "sha256:" + hashlib.sha256(config_blob).hexdigest()
        if not registry.has_blob(ref.repository, config_digest):
            registry.upload(ref.repository, config_blob, config_digest)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
            "config": {"mediaType": oci.OCI_CONFIG, "digest": config_digest, "size": len(config_blob)},
            "layers": [{"mediaType": oci.OCI_LAYER_GZIP, "digest": record["digest"], "size": record["size"]}],
        }, sort_keys=True).encode()
        manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        index = self._index_with(ref, manifest_digest, len(manifest), OCI_ARCH.get(arch, arch))
        if index is None:
            registry.put_manifest(ref.repository, ref.tag, manifest, oci.OCI_MANIFEST)
        else:
            registry.put_manifest(ref.repository, manifest_digest, manifest, oci.OCI_MANIFEST)
            registry.put_manifest(ref.repository, ref.tag, index, oci.OCI_INDEX)
        return PushResult(image.id, uploaded, written)

    def _index_with(self, ref: Reference, digest: str, size: int, arch: str) -> bytes | None:
        """The index to put under the tag when it holds another architecture already (None:
        put the manifest itself)."""
        try:
            body, media, old_digest = self.registry.manifest(ref.repository, ref.tag, "absent")
        except NotFound:
            return None
        current = _json(body, "manifest")
        entries: list[dict[str, Any]]
        if media in oci.INDEXES or "manifests" in current:
            entries = [m for m in current.get("manifests") or [] if isinstance(m, dict)]
        else:
            try:
                config_desc = _descriptor(current.get("config"), "config")
                old_config = _json(self.registry.small_blob(ref.repository, config_desc["digest"], CONFIG_LIMIT),
                                   "config")
            except (InvalidInput, NotFound):
                return None
            old_arch = str(old_config.get("architecture"))
            if old_arch == arch:
                return None
            entries = [{"mediaType": media if media in oci.MANIFESTS else oci.OCI_MANIFEST, "digest": old_digest,
                        "size": len(body), "platform": {"architecture": old_arch, "os": "linux"}}]
        entries = [m for m in entries if (m.get("platform") or {}).get("architecture") != arch]
        entries.append({"mediaType": oci.OCI_MANIFEST, "digest": digest, "size": size,
                        "platform": {"architecture": arch, "os": "linux"}})
        return json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": entries},
                          sort_keys=True).encode()

    # Listing --------------------------------------------------------------------

    async def tags(self) -> list[str]:
        """``NAME:TAG`` for every repository under the namespace (``/v2/_catalog``, where
        the registry allows it) and its tags."""
        return await asyncio.to_thread(self._tags)

    def _tags(self) -> list[str]:
        prefix = f"{self.namespace}/" if self.namespace else ""
        try:
            repositories = [r for r in self.registry.catalog() if r.startswith(prefix)]
        except (NotFound, ExternalError) as e:
            raise ExternalError(f"registry {self.host} does not list its repositories ({e.message})",
                                hint=f"Pull by name: `miv pull {self.remote.name} NAME:TAG`.") from e
        found = []
        for repository in repositories:
            name = repository[len(prefix):]
            try:
                found += [f"{name}:{t}" for t in self.registry.tags(repository)]
            except NotFound:
                continue
        return valid_tags(found, parse_remote_tag)


class _Hashing:
    """SHA256 of the pieces passing through (a layer's diff_id: the digest of its tar)."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def wrap(self, pieces: Any) -> Any:
        for piece in pieces:
            self._hash.update(piece)
            yield piece

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


def _json(body: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError as e:
        raise InvalidInput(f"the registry's {what} is not JSON") from e
    if not isinstance(value, dict):
        raise InvalidInput(f"the registry's {what} is not a JSON object")
    return value


def _descriptor(value: Any, what: str) -> dict[str, Any]:
    """A content descriptor, validated: a sha256 digest and a size."""
    if not isinstance(value, dict):
        raise InvalidInput(f"the registry's manifest has no valid {what} descriptor")
    digest, size = value.get("digest"), value.get("size")
    if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest):
        raise InvalidInput(f"the registry's manifest names its {what} by a digest minivirt does not accept "
                           "(only sha256)")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidInput(f"the registry's manifest gives its {what} no valid size")
    return value


def _platform(index: dict[str, Any], arch: str, what: str) -> str:
    """The digest of the index entry for linux/``arch``."""
    wanted = OCI_ARCH.get(arch, arch)
    seen = []
    for entry in index.get("manifests") or []:
        if not isinstance(entry, dict):
            continue
        platform = entry.get("platform") or {}
        seen.append(str(platform.get("architecture")))
        if platform.get("architecture") == wanted and platform.get("os", "linux") == "linux":
            return str(_descriptor(entry, "manifest")["digest"])
    raise NotFound(f"{what} has no image for linux/{wanted} (it has: {', '.join(sorted(set(seen)))[:100] or 'none'})")


def _minivirt_labels(config: dict[str, Any], ref: Reference) -> tuple[str | None, bytes | None]:
    """The image id and config.json minivirt recorded in the labels, validated (or Nones)."""
    inner = config.get("config")
    labels = inner.get("Labels") if isinstance(inner, dict) else None
    if not isinstance(labels, dict) or layout.LABEL_IMAGE_ID not in labels:
        return None, None
    image_id, config_text = labels.get(layout.LABEL_IMAGE_ID), labels.get(layout.LABEL_CONFIG)
    if not isinstance(image_id, str) or not is_image_id(image_id) or not isinstance(config_text, str):
        raise InvalidInput(f"{ref}: its minivirt labels are damaged (no valid image id and config)")
    from ..imageconfig import ImageConfig

    config_json = config_text.encode()
    ImageConfig.parse(config_json)
    return image_id, config_json


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if (isinstance(value, dict) and isinstance(value.get("digest"), str) and DIGEST_RE.fullmatch(value["digest"])
            and isinstance(value.get("size"), int) and isinstance(value.get("diff_id"), str)):
        return value
    return None
