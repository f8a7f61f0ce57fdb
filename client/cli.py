"""``custody``: install and update packages that TUF and in-toto have both verified.

Exit codes are one table for every command (`custody.client.errors`): 0 done or up
to date, 1 refused for security, 2 usage, 3 repository unreachable, 4 health
check failed and rolled back, 5 not found, 6 local failure, 7 the installer
(pip, uv) failed for its own reasons, 130/143
interrupted by SIGINT/SIGTERM (after rolling back). ``--home`` defaults to
``CUSTODY_HOME``, then a per-user directory.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from custody.client.config import default_home
from custody.client.errors import EXIT_LOCAL, EXIT_SIGINT, ClientError, ConfigError, Interrupted
from custody.client.health import DEFAULT_TIMEOUT, deferred_signals
from custody.keys_tooling.clickutil import POSITIVE, Seconds, fails_cleanly
from custody.keys_tooling.cliutil import guarded

_fails_cleanly = fails_cleanly("custody", ClientError)
SIGNAL_NAMES = {2: "SIGINT", 15: "SIGTERM"}


class CustodyGroup(click.Group):
    """Signals end a command with one sentence and 128 + the signal, never a bare 'Aborted!';
    a client home the system will not let custody use ends it with one sentence and exit 6."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OSError as exc:
            # Every file custody keeps is under the home: one that cannot be made, read or
            # written there (a read-only or virtual file system, permissions, a full disk)
            # is a local failure, whichever command met it first.
            home = (ctx.obj or {}).get("home")
            if home is None or not _within(exc.filename, home):
                raise
            click.echo(f"custody: the client home {home} cannot be used: "
                       f"{exc.strerror or exc} ({exc.filename})", err=True)
            ctx.exit(EXIT_LOCAL)
        except Interrupted as exc:
            click.echo(f"custody: interrupted by {SIGNAL_NAMES.get(exc.signum, exc.signum)}; "
                       f"{exc.aftermath}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("custody: interrupted by SIGINT; anything unfinished was rolled back",
                       err=True)
            ctx.exit(EXIT_SIGINT)


def _within(filename: object, home: Path) -> bool:
    if not isinstance(filename, str | Path):
        return False
    path, root = Path(filename).absolute(), home.absolute()
    return path == root or root in path.parents


def _check_home(home: Path) -> None:
    """A home below a file is a usage error, said before any command trips over it."""
    for parent in home.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"--home {home} cannot be a client home: {parent} is a "
                                  "file, not a directory")
            return


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
    """The command's PackageManager, made once (recovery and the command share it)."""
    from custody.client.packages import PackageManager

    if "manager" not in ctx.obj:
        # Progress only for a person watching a terminal; logs and pipes stay quiet.
        ctx.obj["manager"] = PackageManager(
            ctx.obj["home"], progress=_progress if sys.stderr.isatty() else None)
    return ctx.obj["manager"]


def _spec(spec: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME==VERSION``, checked before anything is asked of the network."""
    from custody.formats.errors import FormatError
    from custody.formats.index import parse_version

    name, _, version = spec.partition("==")
    if not name.strip():
        raise click.BadParameter(f"{spec[:40]!r} names no package", param_hint="NAME[==VERSION]")
    if version.strip():
        try:
            parse_version(version.strip(), "the version")
        except FormatError as exc:
            raise click.BadParameter(str(exc), param_hint="NAME[==VERSION]") from exc
    return name.strip(), version.strip() or None


def _recover(ctx: click.Context) -> None:
    """Finish any update a killed custody left unchecked, before the command runs."""
    from custody.client.config import ClientConfig

    if not ClientConfig.path(ctx.obj["home"]).exists():
        return
    for sentence in _manager(ctx).recover(wait=False):
        click.echo(f"custody: {sentence}", err=True)


@click.group(cls=CustodyGroup)
@click.version_option(package_name="custody", prog_name="custody")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Client home (default: $CUSTODY_HOME, else ~/.local/share/custody).")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens.")
@click.pass_context
def main(ctx: click.Context, home: Path | None, verbose: bool) -> None:
    """Install and update packages only after TUF and in-toto have verified them.

    \b
    Exit codes (every command):
      0    done, or up to date          4    health check failed, rolled back
      1    refused for security         5    not found (package, version)
      2    usage, not initialised       6    local failure (disk, unpacking)
      3    repository unreachable       130  interrupted (143 for SIGTERM)
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="custody: %(message)s")
    if not verbose:  # command alignment notes are in-toto's warnings, not the user's;
        logging.getLogger("custody.intoto").setLevel(logging.ERROR)  # a connection retried is
        logging.getLogger("urllib3").setLevel(logging.ERROR)  # urllib3's business
    ctx.obj = {"home": home or default_home()}
    _fails_cleanly(_check_home)(ctx.obj["home"])
    ctx.with_resource(deferred_signals())
    if ctx.invoked_subcommand not in ("init", None):
        _fails_cleanly(_recover)(ctx)


@main.command()
@click.option("--url", "urls", multiple=True, required=True,
              help="Repository URL (metadata under URL/metadata/); repeat for mirrors.")
@click.option("--root", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              required=True, help="The repository's first root metadata (trust anchor).")
@click.option("--layout-key", "layout_keys", multiple=True,
              type=click.Path(dir_okay=False, exists=True),
              help="Pin layout keys instead of trusting the 'layouts' role's.")
@click.option("--layout-threshold", type=POSITIVE)
@click.option("--inspections", type=click.Choice(["refuse", "skip", "run"]), default="refuse",
              show_default=True, help="Whether layouts may run inspection commands here.")
@click.option("--report-url", help="Send health reports to this repository server (opt-in).")
@click.option("--report-token", help="The report token for --report-url.")
@click.option("--force", is_flag=True,
              help="Replace the root this home trusts already (and its verified metadata).")
@click.pass_context
@_fails_cleanly
def init(ctx: click.Context, urls: tuple[str, ...], root: Path, layout_keys: tuple[str, ...],
         layout_threshold: int | None, inspections: str, report_url: str | None,
         report_token: str | None, force: bool) -> None:
    """Trust a repository: store its root metadata and URLs.

    A home that trusts a root already is refused, naming both roots' keys,
    unless --force: every later update rests on this one trust anchor. The
    same init run again (same root and settings) changes nothing and exits 0.
    """
    from custody.client.packages import init_home
    from custody.intoto.metadata import key_to_dict
    from custody.keys_tooling.errors import KeyToolingError
    from custody.keys_tooling.keys import load_public_key

    try:
        keys = [key_to_dict(load_public_key(p)) for p in layout_keys]
    except KeyToolingError as exc:
        raise click.BadParameter(str(exc)) from exc
    if bool(report_url) != bool(report_token):
        raise click.UsageError("--report-url and --report-token go together")
    config = init_home(ctx.obj["home"], urls, root, keys, layout_threshold, inspections,
                       force)
    if report_url:
        config.report_url, config.report_token = report_url, report_token
        config.save(ctx.obj["home"])
    click.echo(f"trusting {root} for {', '.join(urls)} in {ctx.obj['home']}")


def _echo_outcome(outcome: Any, verb: str, same: str = "is up to date") -> None:
    if outcome.note and not outcome.changed:
        click.echo(outcome.note if "known bad" in outcome.note or "awaits" in outcome.note
                   else f"{outcome.name} {outcome.version}: {outcome.note}")
    elif outcome.changed:
        note = f"; {outcome.note}" if outcome.note else ""
        if verb == "updated" and outcome.previous:
            click.echo(f"updated {outcome.name} {outcome.previous} -> {outcome.version}{note}")
        else:
            was = f" (was {outcome.previous})" if outcome.previous else ""
            click.echo(f"{verb} {outcome.name} {outcome.version}{was}{note}")
    else:
        click.echo(f"{outcome.name} {outcome.version} {same}")


@main.command()
@click.argument("spec", metavar="NAME[==VERSION]")
@click.option("--channel", default="stable", show_default=True)
@click.option("--allow-downgrade", is_flag=True, help="Allow installing an older version.")
@click.option("--allow-unverified", is_flag=True,
              help="Install a target without in-toto metadata (TUF checks only).")
@click.option("--retry-failed", is_flag=True,
              help="Install a version even if it failed its health check here before.")
@click.pass_context
@_fails_cleanly
def install(ctx: click.Context, spec: str, channel: str, allow_downgrade: bool,
            allow_unverified: bool, retry_failed: bool) -> None:
    """Install a package after TUF and in-toto verification.

    A package with a health check (see 'custody health-check') runs it in the
    new version and rolls back if it fails.
    """
    from custody.client.reports import for_error, for_outcome, record

    name, version = _spec(spec)
    manager = _manager(ctx)
    try:
        outcome = manager.install(name, version, channel, allow_downgrade, allow_unverified,
                                  retry_failed, check=manager.health_check_for(name))
    except ClientError as exc:
        record(manager.home, manager.config, [for_error(manager.config, name, exc)])
        raise
    _echo_outcome(outcome, "installed", "is already installed")
    record(manager.home, manager.config, [for_outcome(manager.config, outcome, "installed")])


@main.command()
@click.argument("names", nargs=-1)
@click.option("--health-check", metavar="CMD",
              help="Check for packages that have none of their own (split like a shell).")
@click.option("--health-timeout", type=Seconds(), default=DEFAULT_TIMEOUT, show_default=True,
              help="Seconds --health-check may take.")
@click.option("--retry-failed", is_flag=True,
              help="Install versions that failed their health check here before.")
@click.option("--confirm-within", type=Seconds(), metavar="SECONDS",
              help="Instead of a check, keep new versions on probation until 'custody "
                   "confirm NAME'; rolled back after SECONDS.")
@click.pass_context
@_fails_cleanly
def update(ctx: click.Context, names: tuple[str, ...], health_check: str | None,
           health_timeout: float, retry_failed: bool, confirm_within: float | None) -> None:
    """Move installed packages to their channel's version (never backwards).

    Every package is tried, one line each; the exit code is the worst outcome
    (a security refusal first). A version that failed its health check here is
    skipped until a newer one is offered.
    """
    import shlex

    from custody.client.config import HealthCheck
    from custody.client.packages import exit_code

    try:
        default = HealthCheck(shlex.split(health_check), health_timeout) if health_check \
            else None
    except ValueError as exc:  # unbalanced quotes
        raise click.BadParameter(f"{health_check!r}: {exc}", param_hint="--health-check") \
            from exc
    from custody.client.reports import for_error, for_outcome, record

    manager = _manager(ctx)
    results = manager.update(names, default, retry_failed, confirm_within)
    reports = []
    for result in results:
        reports.append(for_outcome(manager.config, result.outcome, "updated")
                       if result.outcome is not None else
                       for_error(manager.config, result.name, result.error))  # type: ignore[arg-type]
    for result in results:
        if result.outcome is not None:
            _echo_outcome(result.outcome, "updated")
        else:  # one line per package, naming it once
            message = str(result.error)
            named = message.startswith(f"{result.name} ")
            click.echo(message if named else f"{result.name}: {message}", err=True)
            output = getattr(result.error, "output", "")
            if output:
                click.echo("\n".join(f"  | {line}" for line in output.splitlines()), err=True)
    record(manager.home, manager.config, reports)
    ctx.exit(exit_code(results))


@main.command()
@click.argument("spec", metavar="NAME[==VERSION]")
@click.option("--channel", default="stable", show_default=True)
@click.option("-o", "--output", "output", type=click.Path(file_okay=False, path_type=Path),
              default=Path("."), show_default=True, help="Directory to write the file into.")
@click.pass_context
@_fails_cleanly
def fetch(ctx: click.Context, spec: str, channel: str, output: Path) -> None:
    """Write a verified artifact (TUF and in-toto) into a directory and print its path.

    For plugin hosts that install it themselves; nothing is installed here.
    """
    name, version = _spec(spec)
    output.mkdir(parents=True, exist_ok=True)
    click.echo(_manager(ctx).fetch(name, version, channel, output))


@main.group("index")
def index_group() -> None:
    """A verifying package index (PEP 503/691) for pip and uv, on 127.0.0.1."""


@index_group.command("serve")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: any free one, printed).")
@click.pass_context
@_fails_cleanly
def index_serve(ctx: click.Context, port: int) -> None:
    """Serve the index until interrupted; every file only after TUF and in-toto."""
    import time

    from custody.client.config import ClientConfig
    from custody.client.index import serving

    ClientConfig.load(ctx.obj["home"])
    with serving(ctx.obj["home"], port) as (url, _):
        # Your own pip must see this index alone: an extra index in its environment
        # (--isolated drops PIP_* variables) or configuration files (PIP_CONFIG_FILE=/dev/null
        # skips them all) would be a second, unverified source.
        click.echo(f"serving {url}\n(PIP_CONFIG_FILE=/dev/null pip install --isolated "
                   f"--index-url {url} NAME; no other index or --find-links: docs/plugins.md)")
        while True:
            time.sleep(3600)


def _installer(ctx: click.Context, installer: str, program: list[str],
               args: tuple[str, ...], python: str | None) -> None:
    """Run pip or uv against the verifying index; its exit code, or custody's.

    The command line is parsed and rendered anew by `custody.client.installer`: no
    option, requirements file or requirement naming another package source
    reaches the installer. Its own configuration is set aside too
    (``PIP_*``/``UV_*`` variables, pip.conf through ``PIP_CONFIG_FILE=/dev/null``,
    uv's files through ``--no-config``). Exit: the installer's 0; custody's
    code when the index refused or could not verify a file; otherwise 7, the
    installer failed for its own reasons.
    """
    import os
    import subprocess
    import tempfile

    from custody.client.config import ClientConfig
    from custody.client.errors import EXIT_PRIORITY, InstallerFailed
    from custody.client.index import serving
    from custody.client.installer import check

    ClientConfig.load(ctx.obj["home"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    # The index is on loopback: an HTTP(S)_PROXY of the environment must not carry the
    # installer's requests for it away (custody's own downloads use the proxy as configured).
    for name in ("NO_PROXY", "no_proxy"):
        env[name] = ",".join(filter(None, [env.get(name, ""), "127.0.0.1", "localhost"]))
    with tempfile.TemporaryDirectory(prefix="custody-installer-") as workdir:
        invocation = check(installer, args, Path(workdir), python, os.environ.get("VIRTUAL_ENV"))
        target = ["--python", invocation.python] if invocation.python else []
        if installer == "pip":
            command = [*program, *target, *invocation.args]
        else:
            command = [*program, "pip", invocation.args[0], *target, *invocation.args[1:],
                       "--no-config"]
        if not invocation.uses_index:
            ctx.exit(subprocess.run(command, check=False, env=env).returncode)
        with serving(ctx.obj["home"]) as (url, index):
            code = subprocess.run([*command, "--index-url", url], check=False,
                                  env=env).returncode
    if code == 0:
        ctx.exit(0)
    if index.refusals:
        rank = {c: i for i, c in enumerate(EXIT_PRIORITY)}
        raise min(index.refusals, key=lambda e: rank.get(e.exit_code, len(rank)))
    raise InstallerFailed(f"{installer} exited with {code}; every file custody served was "
                          "verified")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--python", "python", default=None,
              help="Install into this interpreter's environment (default: the active "
                   "virtual environment, $VIRTUAL_ENV; never custody's own).")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
@_fails_cleanly
def pip(ctx: click.Context, python: str | None, args: tuple[str, ...]) -> None:
    """Run pip with only verified files to install: custody pip install NAME ...

    Starts the verifying index on a free port, runs pip against it alone with
    your arguments (checked: no other source may be named, in options or
    requirements files), stops the index; 0, custody's code when custody
    refused a file, or 7 when pip failed for its own reasons. uninstall,
    freeze, list, show, check and inspect run untouched.
    """
    _installer(ctx, "pip", [sys.executable, "-m", "pip"], args, python)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
@_fails_cleanly
def uv(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Run uv with only verified files to install: custody uv pip install NAME ..."""
    import shutil

    found = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if not Path(found).exists():
        raise click.UsageError("uv is not installed (pip install uv)")
    _installer(ctx, "uv", [found], args, None)


@main.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@_fails_cleanly
def list_(ctx: click.Context, as_json: bool) -> None:
    """Installed packages; versions being checked, failed, or interrupted (with attempts)."""
    from custody.client.config import ClientConfig
    from custody.client.state import MAX_INTERRUPTED, State

    ClientConfig.load(ctx.obj["home"])  # not initialised is an error, not an empty list
    state = State.load(ctx.obj["home"])
    if as_json:
        from dataclasses import asdict

        click.echo(json.dumps({n: asdict(p) for n, p in state.packages.items()}, indent=1))
        return
    for name, package in sorted(state.packages.items()):
        line = f"{name} {package.current} [{package.channel}]"
        if package.previous:
            line += f" (previous {package.previous})"
        if package.pending:
            line += f" (checking {package.pending.version})"
        click.echo(line)
        for version, failure in sorted(package.failed.items()):
            click.echo(f"  failed {version}: {failure['reason']} ({failure['at']})")
        for version, tried in sorted(package.interrupted.items()):
            click.echo(f"  interrupted {version}: {tried['attempts']} of {MAX_INTERRUPTED} "
                       f"attempts, tried again by the next update ({tried['reason']}, "
                       f"{tried['at']})")


@main.command()
@click.argument("name")
@click.pass_context
@_fails_cleanly
def remove(ctx: click.Context, name: str) -> None:
    """Uninstall a package and drop its cached downloads."""
    _manager(ctx).remove(name)
    click.echo(f"removed {name}")


@main.command()
@click.argument("name")
@click.pass_context
@_fails_cleanly
def rollback(ctx: click.Context, name: str) -> None:
    """Switch a package back to its previous version; updates then skip the one left."""
    from custody.client.reports import record, report

    manager = _manager(ctx)
    outcome = manager.rollback(name)
    click.echo(f"rolled back {name} {outcome.previous} -> {outcome.version}; updates skip "
               f"{outcome.previous} from now on (--retry-failed to install it again)")
    record(manager.home, manager.config, [report(manager.config, name, "rolled-back", 0,
                                                 outcome.previous, outcome.version,
                                                 "rolled back by hand")])


@main.command()
@click.argument("name")
@click.pass_context
@_fails_cleanly
def verify(ctx: click.Context, name: str) -> None:
    """Re-verify an installed package against the repository's current metadata."""
    outcome = _manager(ctx).verify_installed(name)
    click.echo(f"{outcome.name} {outcome.version} verified (TUF and in-toto)")


@main.command()
@click.pass_context
@_fails_cleanly
def gc(ctx: click.Context) -> None:
    """Delete downloads and files that no installed version needs."""
    entries, freed = _manager(ctx).gc()
    click.echo(f"removed {entries} entries, {freed / 2**20:.1f} MiB")


@main.command()
@click.pass_context
@_fails_cleanly
def recover(ctx: click.Context) -> None:
    """Finish interrupted updates now (every command does this first; for unit files)."""
    for sentence in _manager(ctx).recover():
        click.echo(sentence)


@main.group("health-check")
def health_check() -> None:
    """Each package's own health check, run in every new version before it goes live."""


@health_check.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--timeout", type=Seconds(), default=DEFAULT_TIMEOUT, show_default=True,
              help="Seconds the check may take; longer counts as a failure.")
@click.pass_context
@_fails_cleanly
def health_check_set(ctx: click.Context, name: str, command: tuple[str, ...],
                     timeout: float) -> None:
    """Set NAME's check: custody health-check set NAME [--timeout S] -- CMD [ARGS]...

    The command runs with the new version's directory as its working
    directory and CUSTODY_PACKAGE, CUSTODY_VERSION, CUSTODY_PREVIOUS_VERSION
    in its environment; exit code 0 means healthy.
    """
    from custody.client.config import ClientConfig, HealthCheck

    config = ClientConfig.load(ctx.obj["home"])
    config.health_checks[name] = HealthCheck(list(command), timeout)
    config.save(ctx.obj["home"])
    click.echo(f"{name}: health check {' '.join(command)!r}, timeout {timeout:g} s")


@health_check.command("unset")
@click.argument("name")
@click.pass_context
@_fails_cleanly
def health_check_unset(ctx: click.Context, name: str) -> None:
    """Remove NAME's check."""
    from custody.client.config import ClientConfig

    config = ClientConfig.load(ctx.obj["home"])
    if config.health_checks.pop(name, None) is None:
        raise ConfigError(f"{name} has no health check")
    config.save(ctx.obj["home"])
    click.echo(f"{name}: no health check")


@health_check.command("list")
@click.pass_context
@_fails_cleanly
def health_check_list(ctx: click.Context) -> None:
    """Every package's check and timeout."""
    import shlex

    from custody.client.config import ClientConfig

    for name, check in sorted(ClientConfig.load(ctx.obj["home"]).health_checks.items()):
        click.echo(f"{name}: {shlex.join(check.command)} (timeout {check.timeout:g} s)")


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
@_fails_cleanly
def run(ctx: click.Context, name: str, command: tuple[str, ...]) -> None:
    """Run an agent and restart it into new versions: custody run NAME -- CMD [ARGS]...

    CMD runs in the agent's current version directory. Exit code 75 from it
    means "restart me"; a version awaiting confirmation that exits or misses
    its deadline is rolled back and the previous version started again. Ends
    with the agent's own exit code.
    """
    from custody.client.agent import supervise

    ctx.exit(supervise(ctx.obj["home"], name, command,
                       log=lambda s: click.echo(f"custody: {s}", err=True)))


@main.command()
@click.argument("name")
@click.pass_context
@_fails_cleanly
def confirm(ctx: click.Context, name: str) -> None:
    """Confirm that the version awaiting confirmation is healthy: it goes live."""
    outcome = _manager(ctx).confirm(name)
    click.echo(f"{name} {outcome.version} is live" if outcome.changed else
               f"{name}: {outcome.note}")


#: The console script: bugs exit 70 with one sentence (keys_tooling.cliutil.guarded).
console = guarded("custody", main)
