"""``custody-intoto``: a drop-in for the in-toto reference command lines.

A pipeline switches by changing the command name only: ``in-toto-run`` becomes
``custody-intoto run`` with the same flags (``-m a b c`` included) and the
same exit codes: 0 pass, 1 verification or recording failure, 2 usage error,
and ``run`` exits with the step command's own non-zero return value as the
reference does. ``layout new``, which the reference does not have, exits 0
when the output already holds the layout it would write (a script run twice)
and 2 when it holds another one and ``--force`` is not given.

argparse, not click, parses these sub-commands because the reference's flags
take several values each (``nargs="+"``) and stop at ``--``, which argparse
reproduces exactly and click cannot.

Passwords for encrypted keys: ``-P PASSWORD``, ``-P`` alone to be prompted,
or the environment variable ``CUSTODY_KEY_PASSWORD``.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from custody.keys_tooling.cliutil import VersionAction, guarded
from custody.keys_tooling.keys import PASSWORD_ENV, password_from_env

_PROMPT = object()


class _Fail(Exception):
    """A one-sentence failure the command prints before exiting with ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _password(args: argparse.Namespace, what: str) -> bytes | None:
    value = getattr(args, "password", None)
    if value is _PROMPT:
        return getpass.getpass(f"Enter password for {what}: ").encode()
    if value is not None:
        return value.encode()
    return password_from_env()


def _signer(spec: str, args: argparse.Namespace):  # -> Signer
    from custody.keys_tooling.errors import KeyToolingError
    from custody.keys_tooling.keys import load_signer

    try:
        return load_signer(spec, _password(args, spec))
    except KeyToolingError as exc:
        raise _Fail(str(exc)) from exc


def _read(path: str, what: str = "") -> bytes:
    """The bytes of an input file, or a one-sentence failure naming it (``what``, the path)."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise _Fail(f"cannot read {what}{path}: {exc.strerror}") from exc


def _load(path: str, what: str = ""):  # -> intoto.metadata.Metadata
    """A link or layout file, in either envelope (`_read`'s failure if unreadable)."""
    from custody.intoto.metadata import metadata_from_bytes

    return metadata_from_bytes(_read(path, what), where=path)


def _public_keys(paths: Sequence[str]):  # -> list[Key]
    from custody.keys_tooling.errors import KeyToolingError
    from custody.keys_tooling.keys import load_public_key

    try:
        return [load_public_key(p) for p in paths]
    except KeyToolingError as exc:
        raise _Fail(str(exc)) from exc


def _recorder(args: argparse.Namespace):
    from custody.intoto.artifacts import ArtifactRecorder

    return ArtifactRecorder(
        exclude_patterns=args.exclude_patterns or (),
        base_path=args.base_path,
        follow_symlink_dirs=True,
        normalize_line_endings=getattr(args, "normalize_line_endings", False),
        lstrip_paths=args.lstrip_paths or (),
    )


# -- sub-commands ------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    from custody.intoto.runner import StepRecorder

    command = list(args.link_cmd)
    if command and command[0] == "--":
        command = command[1:]
    if not command and not args.no_command:
        raise _Fail("give a command after '--', or --no-command to record without one", 2)
    if command and args.no_command:
        raise _Fail("--no-command and a command exclude each other", 2)
    recorder = StepRecorder(
        name=args.step_name, signer=_signer(args.signing_key, args), recorder=_recorder(args),
        use_dsse=args.use_dsse, record_streams=args.record_streams,
        timeout=args.run_timeout, metadata_directory=args.metadata_directory,
        attest=args.attest,
    )
    metadata = recorder.run(args.materials or (), args.products or (), command)
    code = metadata.payload.byproducts.get("return-value", 0)  # type: ignore[union-attr]
    return int(code) if code else 0


def cmd_record(args: argparse.Namespace) -> int:
    from custody.intoto.runner import StepRecorder

    recorder = StepRecorder(
        name=args.step_name, signer=_signer(args.signing_key, args), recorder=_recorder(args),
        use_dsse=args.use_dsse, metadata_directory=getattr(args, "metadata_directory", None),
        attest=args.attest,
    )
    if args.action == "start":
        recorder.start(args.materials or ())
    else:
        recorder.stop(args.products or ())
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from custody.intoto.verify import DirectoryLinks, InspectionPolicy, Verifier

    keys = _public_keys(args.verification_keys)
    layout = _load(args.layout, "layout ")
    parameters = dict(p.split("=", 1) for p in args.parameters) if args.parameters else None
    sigstore = None
    if args.trusted_root:
        from custody.intoto.keyless import SigstoreTrust

        sigstore = SigstoreTrust(_read(args.trusted_root, "trusted root "))
    verifier = Verifier(
        inspections=InspectionPolicy(args.inspections),
        inspection_timeout=args.inspect_timeout,
        persist_inspection_links=True,
        sigstore=sigstore,
    )
    verifier.verify(layout, keys, DirectoryLinks(Path(args.link_dir)),
                    threshold=args.threshold, parameters=parameters)
    if not args.quiet:
        print("the software product passed all verification", file=sys.stderr)
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    from custody.intoto.models import Layout, Link, link_filename

    metadata = _load(args.file)
    payload = metadata.payload
    if args.verify:
        keys = _public_keys(args.key)
        bad = [k.keyid[:8] for k in keys if not metadata.is_signed_by(k)]
        if bad:
            raise _Fail(f"{args.file} has no valid signature by key(s) {', '.join(bad)}")
        print(f"{args.file}: valid signatures by {len(keys)} key(s)", file=sys.stderr)
        return 0
    if isinstance(payload, Link) and len(args.key) != 1:
        raise _Fail("a link is signed by exactly one functionary key; give one --key", 2)
    if not args.append:
        metadata.signatures = []
    signature = None
    for spec in args.key:
        signature = metadata.sign(_signer(spec, args))
    if args.output:
        out = Path(args.output)
    elif isinstance(payload, Link) and signature is not None:
        out = Path(args.file).with_name(link_filename(payload.name, signature.keyid))
    else:
        out = Path(args.file)
    metadata.dump(out)
    kind = "layout" if isinstance(payload, Layout) else "link"
    print(f"signed {kind} written to {out}", file=sys.stderr)
    return 0


def cmd_layout_new(args: argparse.Namespace) -> int:
    from custody.intoto.layout_toml import fixes_expiry, layout_from_toml
    from custody.intoto.metadata import Envelope, Metablock
    from custody.keys_tooling.keys import load_public_key

    layout = layout_from_toml(args.description, load_public_key)
    signers = [_signer(spec, args) for spec in args.key]
    output = Path(args.output)
    if output.exists() and not args.force:
        kept = _kept_layout(output, layout, signers, args.use_dsse,
                            fixes_expiry(args.description))
        print(f"kept {output}: it holds this layout already, signed by the same "
              f"{len(signers)} key(s), expires {kept.expires} (--force signs a new one)",
              file=sys.stderr)
        return 0
    metadata = Envelope.new(layout) if args.use_dsse else Metablock.new(layout)
    for signer in signers:
        metadata.sign(signer)
    metadata.dump(output)
    print(f"layout with {len(layout.steps)} step(s) and {len(layout.inspect)} inspection(s) "
          f"signed by {len(args.key)} key(s), expires {layout.expires}: {args.output}",
          file=sys.stderr)
    return 0


#: A layout's fields as a refusal names them.
_LAYOUT_FIELDS = {"inspect": "inspections", "keys": "functionary keys", "expires": "expiry date"}


def _kept_layout(output: Path, layout, signers, use_dsse: bool,  # -> Layout
                 fixed_expiry: bool):
    """The layout in ``output`` if it is the one ``layout new`` would write; else refuse.

    The same description, keys and envelope give the same layout but for its
    ``expires``, which is counted from signing unless the description names
    a date: a second run keeps the file, and with it the layout the
    repository already published. Anything else in the file (another layout,
    other signatures, an expired or unreadable file) is a usage error without
    --force: the file may be the layout clients verify against.
    """
    from datetime import UTC, datetime

    from custody.intoto.errors import IntotoError
    from custody.intoto.metadata import Envelope
    from custody.intoto.models import Layout

    refuse = f"{output} exists and "
    try:
        existing = _load(str(output), "layout ")
        payload = existing.payload
    except IntotoError as exc:
        raise _Fail(f"{refuse}is not a layout ({exc}); pass --force to replace it", 2) from exc
    if not isinstance(payload, Layout):
        raise _Fail(f"{refuse}is a link, not a layout; pass --force to replace it", 2)
    ours, theirs = layout.to_dict(), payload.to_dict()
    if not fixed_expiry:  # counted from signing: a later run's differs, the layout not
        del ours["expires"], theirs["expires"]
    differs = [_LAYOUT_FIELDS.get(field, field) for field in ours
               if ours[field] != theirs.get(field)]
    if isinstance(existing, Envelope) != use_dsse:
        differs.append("envelope kind (DSSE or classic)")
    keyids = {signer.public_key.keyid for signer in signers}
    if set(existing.signing_keyids) != keyids or not all(
            existing.is_signed_by(signer.public_key) for signer in signers):
        differs.append("signatures")
    if differs:
        raise _Fail(f"{refuse}holds another layout (differing in {', '.join(differs)}); "
                    "pass --force to replace it", 2)
    if payload.expires_at <= datetime.now(UTC):
        raise _Fail(f"{refuse}holds this layout, expired on {payload.expires}; pass --force "
                    "to sign it anew", 2)
    return payload


def cmd_layout_show(args: argparse.Namespace) -> int:
    from custody.intoto.models import Layout
    from custody.intoto.show import describe_layout, describe_signatures
    from custody.keys_tooling.keys import load_public_key

    metadata = _load(args.layout, "layout ")
    if not isinstance(metadata.payload, Layout):
        raise _Fail(f"{args.layout} is a link, not a layout")
    keys = {key.keyid: key for key in (load_public_key(p) for p in args.key or [])}
    names = {keyid: Path(path).name for keyid, path in
             zip(keys, args.key or [], strict=True)}
    print(describe_layout(metadata, names))
    print(describe_signatures(metadata, keys, names))
    return 0


# -- parser ------------------------------------------------------------------

_STEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}\Z")


def _step_name(value: str) -> str:
    """A step name is part of the link's file name: no path separators, no leading dot."""
    if not _STEP_NAME.match(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a step name (letters, digits, '.', '_', '+', '-'; it names "
            "the link file)")
    return value


def _parameter(value: str) -> str:
    if "=" not in value or not value.split("=", 1)[0]:
        raise argparse.ArgumentTypeError(f"{value!r} is not NAME=VALUE")
    return value


def _password_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("-P", "--password", nargs="?", const=_PROMPT, default=None,
                   help=f"password of an encrypted key; -P alone prompts (or set {PASSWORD_ENV})")


def _artifact_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exclude", dest="exclude_patterns", nargs="+", metavar="<pattern>",
                   help="gitignore-style patterns of artifacts not to record")
    p.add_argument("--base-path", metavar="<path>", help="record artifact paths relative to this")
    p.add_argument("--lstrip-paths", nargs="+", metavar="<path>",
                   help="prefixes to strip from recorded artifact paths")
    p.add_argument("--normalize-line-endings", action="store_true",
                   help="hash files as if CRLF and CR line endings were LF")
    p.add_argument("--use-dsse", action="store_true", help="write a DSSE envelope")
    p.add_argument("--attest", action="store_true",
                   help="write an in-toto attestation instead of a classic link: a Statement "
                        "v1 whose subjects are the products and whose predicate is the link "
                        "predicate v0.3, in a DSSE envelope")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="custody-intoto",
        description="Record, sign and verify in-toto supply chains (drop-in for the "
                    "in-toto reference tools).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show more output")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    parser.add_argument("--version", action=VersionAction)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="record a step around a command (as in-toto-run)")
    run.add_argument("-n", "--step-name", required=True, metavar="<name>", type=_step_name)
    run.add_argument("-k", "--signing-key", "--key", required=True, metavar="<path|uri>")
    run.add_argument("-m", "--materials", nargs="+", metavar="<path>")
    run.add_argument("-p", "--products", nargs="+", metavar="<path>")
    run.add_argument("-d", "--metadata-directory", metavar="<directory>")
    run.add_argument("-s", "--record-streams", action="store_true")
    run.add_argument("-x", "--no-command", action="store_true")
    run.add_argument("--run-timeout", type=float, default=10.0, metavar="<seconds>")
    _artifact_flags(run)
    _password_flag(run)
    run.add_argument("link_cmd", nargs=argparse.REMAINDER, metavar="-- <command> [args]")
    run.set_defaults(func=cmd_run)

    record = sub.add_parser("record", help="record a step in two parts (as in-toto-record)")
    record_sub = record.add_subparsers(dest="action", required=True)
    for action in ("start", "stop"):
        p = record_sub.add_parser(action)
        p.add_argument("-n", "--step-name", required=True, metavar="<name>", type=_step_name)
        p.add_argument("-k", "--signing-key", "--key", required=True, metavar="<path|uri>")
        if action == "start":
            p.add_argument("-m", "--materials", nargs="+", metavar="<path>")
        else:
            p.add_argument("-p", "--products", nargs="+", metavar="<path>")
        p.add_argument("-d", "--metadata-directory", metavar="<directory>")
        _artifact_flags(p)
        _password_flag(p)
        p.set_defaults(func=cmd_record)

    verify = sub.add_parser("verify", help="verify a supply chain (as in-toto-verify)")
    verify.add_argument("-l", "--layout", required=True, metavar="<path>")
    verify.add_argument("-k", "--verification-keys", "--layout-keys", nargs="+", required=True,
                        metavar="<path>")
    verify.add_argument("--link-dir", default=".", metavar="<path>")
    verify.add_argument("--inspection-timeout", dest="inspect_timeout", type=float,
                        default=10.0, metavar="<seconds>")
    verify.add_argument("-t", "--threshold", type=int, metavar="K",
                        help="accept a layout signed by any K of the keys (default: all)")
    verify.add_argument("--parameter", dest="parameters", action="append", metavar="NAME=VALUE",
                        type=_parameter,
                        help="substitute {NAME} in the layout")
    verify.add_argument("--inspections", choices=["run", "skip", "refuse"], default="run",
                        help="run inspection commands (default), skip them, or refuse to")
    verify.add_argument("--trusted-root", metavar="<path>",
                        help="Sigstore trusted_root.json to verify keyless functionaries' "
                             "bundles with (offline); needed when the layout names any")
    verify.set_defaults(func=cmd_verify)

    sign = sub.add_parser("sign", help="sign or verify a layout or link (as in-toto-sign)")
    sign.add_argument("-f", "--file", required=True, metavar="<path>")
    sign.add_argument("-k", "--key", nargs="+", required=True, metavar="<path|uri>")
    sign.add_argument("-o", "--output", metavar="<path>")
    sign.add_argument("-a", "--append", action="store_true")
    sign.add_argument("--verify", action="store_true")
    sign.add_argument("-p", "--prompt", action="store_const", const=_PROMPT, dest="password")
    sign.set_defaults(func=cmd_sign)

    layout = sub.add_parser("layout", help="write and review layouts")
    layout_sub = layout.add_subparsers(dest="action", required=True)
    new = layout_sub.add_parser(
        "new", help="write a signed layout from a TOML description",
        description="Write a signed layout from a TOML description. An output file that "
                    "holds this layout already (the same description, keys and envelope; "
                    "only its expiry, counted from signing, may differ) is kept, exit 0: a "
                    "script run twice leaves the layout the repository published as it is. "
                    "An output file holding anything else (another layout, an expired one) "
                    "is refused, exit 2 (usage), unless --force.")
    new.add_argument("description", metavar="DESCRIPTION.toml")
    new.add_argument("-k", "--key", nargs="+", required=True, metavar="<path|uri>",
                     help="the project owners' private keys")
    new.add_argument("-o", "--output", required=True, metavar="<path>")
    new.add_argument("--force", action="store_true",
                     help="write over an output file that holds another layout (or an "
                          "expired one), or sign the same layout anew with a new expiry")
    new.add_argument("--use-dsse", action="store_true")
    _password_flag(new)
    new.set_defaults(func=cmd_layout_new)
    show = layout_sub.add_parser("show", help="print a layout for people to review")
    show.add_argument("layout", metavar="LAYOUT")
    show.add_argument("-k", "--key", nargs="+", metavar="<path>",
                      help="public keys: named by file in the output, and used to check "
                           "the layout's signatures")
    show.set_defaults(func=cmd_layout_show)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from custody.intoto.errors import FormatError, IntotoError

    args = build_parser().parse_args(argv)
    level = logging.INFO if args.verbose else logging.ERROR if args.quiet else logging.WARNING
    logging.basicConfig(level=level, format="custody-intoto: %(message)s")
    try:
        code = args.func(args)
    except _Fail as exc:
        print(f"custody-intoto {args.command}: {exc}", file=sys.stderr)
        code = exc.code
    except FormatError as exc:
        print(f"custody-intoto {args.command}: malformed metadata: {exc}", file=sys.stderr)
        code = 1
    except IntotoError as exc:
        print(f"custody-intoto {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 1
    except OSError as exc:
        print(f"custody-intoto {args.command}: {exc.filename or ''}: {exc.strerror}",
              file=sys.stderr)
        code = 1
    return code


#: The console script: bugs exit 70 with one sentence (keys_tooling.cliutil.guarded).
console = guarded("custody-intoto", main, fast_exit=True)
