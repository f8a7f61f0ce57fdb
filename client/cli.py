"""``custody``: install and update packages that TUF and in-toto have both verified.

Exit codes: 0 success, 1 a refused or failed operation (one sentence naming
the layer and what it refused), 2 usage errors. ``--home`` defaults to
``CUSTODY_HOME``, then a per-user directory.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from client.config import default_home
from client.errors import ClientError
from keys_tooling.cliutil import fails_cleanly

_fails_cleanly = fails_cleanly("custody", ClientError)


def _progress(url: str, received: int, total: int | None, elapsed: float) -> None:
    """One line, rewritten in place, for downloads that take more than a moment."""
    name = url.rsplit("/", 1)[-1][:40]
    done = f"{received / 2**20:.1f}" + (f"/{total / 2**20:.1f}" if total else "")
    end = "\n" if total and received >= total else ""
    click.echo(f"\r{name}: {done} MiB ({received / elapsed / 2**20:.1f} MiB/s)", err=True,
               nl=False)
    if end:
        click.echo("", err=True)


def _manager(ctx: click.Context):
    from client.packages import PackageManager

    # Progress only for a person watching a terminal; logs and pipes stay quiet.
    return PackageManager(ctx.obj["home"], progress=_progress if sys.stderr.isatty() else None)


def _spec(spec: str) -> tuple[str, str | None]:
    name, _, version = spec.partition("==")
    return name.strip(), version.strip() or None


@click.group()
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Client home (default: $CUSTODY_HOME, else ~/.local/share/custody).")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens.")
@click.pass_context
def main(ctx: click.Context, home: Path | None, verbose: bool) -> None:
    """Install and update packages only after TUF and in-toto have verified them."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="custody: %(message)s")
    if not verbose:  # command alignment notes are in-toto's warnings, not the user's
        logging.getLogger("intoto").setLevel(logging.ERROR)
    ctx.obj = {"home": home or default_home()}


@main.command()
@click.option("--url", "urls", multiple=True, required=True,
              help="Repository URL (metadata under URL/metadata/); repeat for mirrors.")
@click.option("--root", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              required=True, help="The repository's first root metadata (trust anchor).")
@click.option("--layout-key", "layout_keys", multiple=True,
              type=click.Path(dir_okay=False, exists=True),
              help="Pin layout keys instead of trusting the 'layouts' role's.")
@click.option("--layout-threshold", type=int)
@click.option("--inspections", type=click.Choice(["refuse", "skip", "run"]), default="refuse",
              show_default=True, help="Whether layouts may run inspection commands here.")
@click.pass_context
@_fails_cleanly
def init(ctx: click.Context, urls: tuple[str, ...], root: Path, layout_keys: tuple[str, ...],
         layout_threshold: int | None, inspections: str) -> None:
    """Trust a repository: store its root metadata and URLs."""
    from client.packages import init_home
    from intoto.metadata import key_to_dict
    from keys_tooling.errors import KeyToolingError
    from keys_tooling.keys import load_public_key

    try:
        keys = [key_to_dict(load_public_key(p)) for p in layout_keys]
    except KeyToolingError as exc:
        raise click.BadParameter(str(exc)) from exc
    init_home(ctx.obj["home"], urls, root, keys, layout_threshold, inspections)
    click.echo(f"trusting {root} for {', '.join(urls)} in {ctx.obj['home']}")


@main.command()
@click.argument("spec", metavar="NAME[==VERSION]")
@click.option("--channel", default="stable", show_default=True)
@click.option("--allow-downgrade", is_flag=True, help="Allow installing an older version.")
@click.option("--allow-unverified", is_flag=True,
              help="Install a target without in-toto metadata (TUF checks only).")
@click.pass_context
@_fails_cleanly
def install(ctx: click.Context, spec: str, channel: str, allow_downgrade: bool,
            allow_unverified: bool) -> None:
    """Install a package after TUF and in-toto verification."""
    name, version = _spec(spec)
    outcome = _manager(ctx).install(name, version, channel, allow_downgrade, allow_unverified)
    if outcome.changed:
        click.echo(f"installed {outcome.name} {outcome.version}"
                   + (f" (was {outcome.previous})" if outcome.previous else ""))
    else:
        click.echo(f"{outcome.name} {outcome.version} is already installed")


@main.command()
@click.argument("names", nargs=-1)
@click.option("--health-check", help="Command run in the new version; failure rolls back.")
@click.pass_context
@_fails_cleanly
def update(ctx: click.Context, names: tuple[str, ...], health_check: str | None) -> None:
    """Move installed packages to their channel's version (never backwards)."""
    import shlex

    check = shlex.split(health_check) if health_check else None
    for outcome in _manager(ctx).update(names, check):
        if outcome.changed:
            click.echo(f"updated {outcome.name} {outcome.previous} -> {outcome.version}")
        else:
            click.echo(f"{outcome.name} {outcome.version} is up to date")


@main.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@_fails_cleanly
def list_(ctx: click.Context, as_json: bool) -> None:
    """Installed packages."""
    from client.install import State

    state = State.load(ctx.obj["home"])
    if as_json:
        from dataclasses import asdict

        click.echo(json.dumps({n: asdict(p) for n, p in state.packages.items()}, indent=1))
        return
    for name, package in sorted(state.packages.items()):
        previous = f" (previous {package.previous})" if package.previous else ""
        click.echo(f"{name} {package.current} [{package.channel}]{previous}")


@main.command()
@click.argument("name")
@click.pass_context
@_fails_cleanly
def remove(ctx: click.Context, name: str) -> None:
    """Uninstall a package."""
    _manager(ctx).remove(name)
    click.echo(f"removed {name}")


@main.command()
@click.argument("name")
@click.pass_context
@_fails_cleanly
def rollback(ctx: click.Context, name: str) -> None:
    """Switch a package back to its previous version."""
    outcome = _manager(ctx).rollback(name)
    click.echo(f"rolled back {name} {outcome.previous} -> {outcome.version}")


@main.command()
@click.argument("name")
@click.pass_context
@_fails_cleanly
def verify(ctx: click.Context, name: str) -> None:
    """Re-verify an installed package against the repository's current metadata."""
    outcome = _manager(ctx).verify_installed(name)
    click.echo(f"{outcome.name} {outcome.version} verified (TUF and in-toto)")
