"""``miv remote add/list/remove/ls``, ``miv pull``, ``miv push``."""

from __future__ import annotations

import json
import time

import click

from ..cli import core, run
from ..completion import image_refs, remote_names
from ..render import duration, info, progress, table


@click.group()
def remote() -> None:
    """Image repositories: S3-compatible stores (http/https URLs), folders (file://) or OCI
    registries (oci://)."""


@remote.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--insecure", is_flag=True, help="An oci:// registry spoken to over plain HTTP (a local one).")
@click.option("-f", "--force", is_flag=True, help="Replace remote NAME if it exists.")
def remote_add(name: str, url: str, insecure: bool, force: bool) -> None:
    """Add remote NAME at URL (https://host/bucket, file:///path/to/folder, or
    oci://HOST[:PORT]/NAMESPACE for an OCI registry)."""
    r = core().remotes.add(name, url, insecure, replace=force)
    if r.previous is None:
        info(f"added remote {r.name}: {r.url}")
    elif r.previous == r.url:
        info(f"remote {r.name} is {r.url} already")
    else:
        info(f"replaced remote {r.name}: {r.url} (was {r.previous})")


@remote.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def remote_list(as_json: bool) -> None:
    """List the remotes."""
    remotes = core().remotes.list()
    if as_json:
        click.echo(json.dumps([r.as_json() for r in remotes], indent=2))
    elif remotes:
        table(["NAME", "KIND", "URL"], [[r.name, r.kind, r.url] for r in remotes])
    else:
        info("no remotes; add one with `miv remote add NAME URL`")


remote.add_command(remote_list, "show")


@remote.command("remove")
@click.argument("name", shell_complete=remote_names)
def remote_remove(name: str) -> None:
    """Forget remote NAME (nothing on the remote changes)."""
    core().remotes.remove(name)
    info(f"removed remote {name}")


@remote.command("ls")
@click.argument("name", shell_complete=remote_names)
def remote_ls(name: str) -> None:
    """List the tags on remote NAME (where the store allows listing; for a registry,
    NAME:TAG of every repository under its namespace)."""
    for tag in run(core().remotes.tags(name)):
        click.echo(tag)


@click.command()
@click.argument("remote_name", metavar="REMOTE", shell_complete=remote_names)
@click.argument("remote_tag")
@click.argument("tag", required=False)
@click.option("--arch", help="The architecture {arch} stands for, and the one taken where a registry tag "
                             "offers several (default: this host's).")
def pull(remote_name: str, remote_tag: str, tag: str | None, arch: str | None) -> None:
    """Download REMOTE_TAG from REMOTE and tag it TAG (default: the same); {arch} in either is
    filled in (--arch, else this host's architecture)."""
    from minivirt_core.fsutil import human_size

    started = time.monotonic()
    with progress(f"pulling {remote_tag}") as report:
        result = run(core().remotes.pull(remote_name, remote_tag, tag, report, arch))
    image = result.image
    from minivirt_core.rows import tag_moves

    for line in tag_moves(image.moved):
        info(line)
    if result.downloaded:
        info(f"pulled {image.short_id} ({human_size(result.bytes)} downloaded, verified) in "
             f"{duration(time.monotonic() - started)}")
    else:
        info(f"image {image.short_id} is already here: tagged it, nothing downloaded")
    click.echo(image.short_id)


@click.command()
@click.argument("remote_name", metavar="REMOTE", shell_complete=remote_names)
@click.argument("image", shell_complete=image_refs)
@click.argument("remote_tag")
def push(remote_name: str, image: str, remote_tag: str) -> None:
    """Upload IMAGE to REMOTE as REMOTE_TAG ({arch} becomes the image's architecture).

    S3 remotes take credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or a
    profile) and the endpoint from AWS_ENDPOINT_URL. OCI registries take them from
    `miv registry login` or ~/.docker/config.json; REMOTE_TAG is then NAME[:TAG].
    """
    from minivirt_core.fsutil import human_size

    started = time.monotonic()
    with progress(f"pushing {image}") as report:
        result = run(core().remotes.push(remote_name, image, remote_tag, report))
    if result.uploaded:
        info(f"pushed {result.image_id[:12]} ({human_size(result.bytes)} compressed) in "
             f"{duration(time.monotonic() - started)}")
    else:
        info(f"remote {remote_name} has image {result.image_id[:12]} already: only the tag was written")


@click.group()
def registry() -> None:
    """Credentials for OCI registries (stored 0600 in the database, never printed)."""


@registry.command("login")
@click.argument("host")
@click.option("-u", "--username", prompt=True, help="User name.")
@click.option("--password-stdin", is_flag=True, help="Read the password (or token) from standard input.")
@click.option("--insecure", is_flag=True, help="The registry speaks plain HTTP (checking the credentials).")
def registry_login(host: str, username: str, password_stdin: bool, insecure: bool) -> None:
    """Check and store credentials for registry HOST[:PORT]."""
    import sys

    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else click.prompt("Password", hide_input=True)
    run(core().remotes.login(host, username, password, insecure))
    info(f"logged in to {host} as {username}; the credentials are stored for minivirt only")


@registry.command("logout")
@click.argument("host")
def registry_logout(host: str) -> None:
    """Forget the stored credentials for registry HOST[:PORT]."""
    if core().remotes.logout(host):
        info(f"forgot the credentials for {host}")
    else:
        info(f"no stored credentials for {host} (~/.docker/config.json is not changed)")


COMMANDS = [remote, pull, push, registry]
