"""What ``custody pip`` and ``custody uv`` let an installer do: parsed by meaning, rendered anew.

An installer given one more package source (an index, a find-links
directory, a direct URL, a VCS or local path) will install from it without
custody ever seeing the file: the dependency-confusion attack
docs/plugins.md promises to prevent. Checking the user's words for
forbidden *spellings* fails: pip accepts any unambiguous prefix of a long
option (``--find-link``, ``--extra-index``), aliases (``--pypi-url``),
attached values (``-f/tmp``, ``--index-url=...``), and the same options
inside requirements files, nested through ``-r`` and ``-c``; uv has options
pip lacks (``--index``, ``--default-index``).

So custody parses the command line with each installer's grammar (optparse's
for pip, with its abbreviations; clap's for uv, without), keeps only options
from an allow-list, reads every requirements and constraints file itself
(recursively, in pip's format), keeps only requirements by project name, and
then **renders** the installer's command line and one flattened requirements
file anew. The installer never reads a word custody did not check: a corner
of its grammar that custody parses differently can only change what the
user meant, never add a source.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from custody.client.errors import InstallerUsageError

DOCS = "docs/plugins.md"
#: File names pip reads as a local archive rather than a project name.
ARCHIVES = (".whl", ".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz",
            ".tar.lz", ".tlz", ".tar.lzma")


@dataclass(frozen=True)
class Option:
    """One installer option: its spellings, whether it takes a value, and what custody does."""

    names: tuple[str, ...]
    takes_value: bool = False
    #: "pass" (rendered as given), "requirements"/"constraints" (a file custody reads and
    #: flattens), "python" (the target interpreter), "target" (installs outside any
    #: environment), or "source" (another package source: always refused).
    role: str = "pass"

    @property
    def canonical(self) -> str:
        return next((n for n in self.names if n.startswith("--")), self.names[0])


def _options(spec: str, role: str = "pass", takes_value: bool = False) -> list[Option]:
    return [Option(tuple(names.split("|")), takes_value, role) for names in spec.split()]


#: pip install/download (pip 23-26): what custody passes, and the options naming a source.
PIP_OPTIONS: tuple[Option, ...] = (
    *_options("--no-deps|--no-dependencies --dry-run --user -U|--upgrade --force-reinstall "
              "-I|--ignore-installed --ignore-requires-python --no-build-isolation "
              "--break-system-packages --compile --no-compile --no-warn-script-location "
              "--no-warn-conflicts --require-hashes --no-clean --pre --prefer-binary "
              "--isolated --require-virtualenv|--require-venv -v|--verbose -q|--quiet "
              "--no-input --no-cache-dir --disable-pip-version-check --no-color -h|--help"),
    *_options("--platform --python-version --implementation --abi --upgrade-strategy "
              "--progress-bar --root-user-action --report --only-binary --no-binary "
              "--log|--log-file|--local-log --timeout|--default-timeout --retries "
              "--exists-action --cache-dir -d|--dest|--destination-dir|--destination-directory",
              takes_value=True),
    *_options("-t|--target --root --prefix", "target", True),
    *_options("--python", "python", True),
    *_options("-r|--requirement", "requirements", True),
    *_options("-c|--constraint", "constraints", True),
    *_options("-i|--index-url|--pypi-url --extra-index-url -f|--find-links --trusted-host "
              "-e|--editable --src|--source|--source-dir|--source-directory "
              "--requirements-from-script --group --build-constraint --keyring-provider "
              "--proxy --cert --client-cert --use-feature --use-deprecated "
              "-C|--config-settings --uploaded-prior-to --refresh-package", "source", True),
    *_options("--no-index --no-proxy-env", "source"),
)

#: uv pip install/sync (uv 0.4-0.13): clap spellings, no abbreviations.
UV_OPTIONS: tuple[Option, ...] = (
    *_options("--no-deps --require-hashes --strict --dry-run --compile-bytecode --reinstall "
              "-U|--upgrade --system --break-system-packages --no-build-isolation --no-build "
              "--exact -q|--quiet -v|--verbose -n|--no-cache --no-progress --offline -h|--help"),
    *_options("--only-binary --no-binary --python-version --python-platform --prerelease "
              "--resolution --reinstall-package -P|--upgrade-package --link-mode --color "
              "--cache-dir", takes_value=True),
    *_options("-t|--target --prefix", "target", True),
    *_options("-p|--python", "python", True),
    *_options("-r|--requirements|--requirement", "requirements", True),
    *_options("-c|--constraints|--constraint", "constraints", True),
    *_options("--index --default-index -i|--index-url --extra-index-url -f|--find-links "
              "--index-strategy --keyring-provider --allow-insecure-host|--trusted-host "
              "--config-file -e|--editable --overrides --excludes -b|--build-constraints "
              "--extra --group --cert --exclude-newer --torch-backend --directory --project "
              "-C|--config-setting", "source", True),
    *_options("--no-index --all-extras --no-sources --system-certs", "source"),
)

#: Options a requirements file may hold (pip's format, which uv reads too).
FILE_OPTIONS: tuple[Option, ...] = (
    *_options("--pre --prefer-binary --require-hashes"),
    *_options("--only-binary --no-binary", takes_value=True),
    *_options("-r|--requirement", "requirements", True),
    *_options("-c|--constraint", "constraints", True),
    *_options("--hash", "hash", True),
    *_options("-i|--index-url --extra-index-url -f|--find-links --trusted-host -e|--editable "
              "--use-feature -C|--config-settings --global-option", "source", True),
    *_options("--no-index", "source"),
)

#: Subcommands custody checks and gives its index to, per installer.
CHECKED = {"pip": ("install", "download"), "uv": ("install", "sync")}
#: Subcommands that read no index: passed through untouched (into the chosen environment).
PASS_THROUGH = {"pip": ("uninstall", "freeze", "list", "show", "check", "inspect"),
                "uv": ("uninstall", "freeze", "list", "show", "check", "tree")}


class Grammar:
    """A command line grammar over a set of options: optparse's (pip) or clap's (uv)."""

    def __init__(self, options: Iterable[Option], abbreviations: bool, where: str) -> None:
        self.options = tuple(options)
        self.abbreviations = abbreviations
        self.where = where
        self._by_name = {name: option for option in self.options for name in option.names}

    def _long(self, word: str) -> Option:
        if word in self._by_name:
            return self._by_name[word]
        matches = {self._by_name[n] for n in self._by_name
                   if n.startswith("--") and n.startswith(word)} if self.abbreviations else set()
        if len(matches) == 1:
            return matches.pop()
        if len(matches) > 1:
            names = ", ".join(sorted(m.canonical for m in matches))
            raise InstallerUsageError(f"{self.where}: {word} is ambiguous ({names})")
        raise InstallerUsageError(f"{self.where}: custody does not pass {word} to the "
                                  f"installer (see {DOCS} for the options it supports)")

    def parse(self, words: Sequence[str]) -> tuple[list[tuple[Option, str | None]], list[str]]:
        """The options (each with its value) and positional words, in order.

        A source option is refused here, whatever its spelling, naming it as
        the installer would read it.
        """
        found: list[tuple[Option, str | None]] = []
        positional: list[str] = []
        rest = list(words)
        while rest:
            word = rest.pop(0)
            if word == "--":
                positional.extend(rest)
                break
            if word.startswith("--"):
                name, eq, attached = word.partition("=")
                option = self._long(name)
                if option.takes_value:
                    value = attached if eq else self._next(rest, option)
                elif eq:
                    raise InstallerUsageError(f"{self.where}: {option.canonical} takes no value")
                else:
                    value = None
                found.append(self._checked(option, value, word))
            elif word.startswith("-") and word != "-":
                letters = word[1:]
                while letters:
                    option = self._short("-" + letters[0])
                    letters = letters[1:]
                    if option.takes_value:
                        if letters.startswith("=") and not self.abbreviations:
                            letters = letters[1:]  # clap reads -p=3.12 as -p 3.12
                        value = letters or self._next(rest, option)
                        found.append(self._checked(option, value, word))
                        break
                    found.append(self._checked(option, None, word))
            else:
                positional.append(word)
        return found, positional

    def _short(self, name: str) -> Option:
        if name in self._by_name:
            return self._by_name[name]
        raise InstallerUsageError(f"{self.where}: custody does not pass {name} to the "
                                  f"installer (see {DOCS} for the options it supports)")

    def _next(self, rest: list[str], option: Option) -> str:
        if not rest:
            raise InstallerUsageError(f"{self.where}: {option.canonical} needs a value")
        return rest.pop(0)

    def _checked(self, option: Option, value: str | None, word: str
                 ) -> tuple[Option, str | None]:
        if option.role == "source":
            read = "" if word.split("=", 1)[0] == option.canonical \
                else f" (read as {option.canonical})"
            raise InstallerUsageError(
                f"{self.where}: {word.split('=', 1)[0]}{read} names another package source; "
                f"custody chooses the index, so nothing unverified is installed ({DOCS})")
        return option, value


_ENV_VAR = re.compile(r"\$\{([A-Z0-9_]+)\}")
_COMMENT = re.compile(r"(^|\s+)#.*$")


def requirement_line(text: str, where: str) -> str:
    """One requirement as pip and uv will read it: a project name, extras, version, marker.

    Anything else names its own source (a URL, ``name @ URL``, a VCS
    reference, a local path or archive) and is refused. The name is
    rendered normalized, which can contain neither ``/`` nor ``.``: so
    the installer cannot read it as a path or an archive file either.
    """
    try:
        requirement = Requirement(text)
    except InvalidRequirement as exc:
        raise InstallerUsageError(
            f"{where}: {text!r} is not a requirement by project name (a path, URL or VCS "
            f"reference names another package source; {DOCS})") from exc
    if text.strip().lower().endswith(ARCHIVES):
        raise InstallerUsageError(
            f"{where}: {text!r} looks like a local archive, another package source; custody "
            f"installs by project name from its verified index only ({DOCS})")
    if requirement.url:
        raise InstallerUsageError(
            f"{where}: {text!r} names its own source ({requirement.url}); custody installs "
            f"by project name from its verified index only ({DOCS})")
    requirement.name = canonicalize_name(requirement.name)
    return str(requirement)


@dataclass
class Requirements:
    """Requirements and constraints gathered from the command line and every file it names."""

    requirements: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    #: Options a file may set for the whole run (--pre, --only-binary ...), kept as lines of
    #: the flattened file, where the installer reads them as it would have in the user's.
    options: list[str] = field(default_factory=list)

    def read(self, path: str, constraint: bool, seen: tuple[Path, ...] = ()) -> None:
        """Read a requirements file in pip's format, and those it names, recursively."""
        if re.match(r"[a-z][a-z0-9+.-]*://", path, re.I):
            raise InstallerUsageError(f"requirements file {path}: custody reads local files "
                                      "only (a URL would be fetched unverified)")
        file = Path(path)
        resolved = file.resolve()
        if resolved in seen:
            raise InstallerUsageError(f"requirements file {path} includes itself")
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InstallerUsageError(f"cannot read requirements file {path}: "
                                      f"{getattr(exc, 'strerror', None) or exc}") from exc
        for number, line in _logical_lines(text):
            self._line(line, f"{path}:{number}", file.parent, constraint, (*seen, resolved))

    def _line(self, line: str, where: str, base: Path, constraint: bool,
              seen: tuple[Path, ...]) -> None:
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise InstallerUsageError(f"{where}: {exc}") from exc
        split = next((i for i, w in enumerate(words) if w.startswith("-")), len(words))
        requirement, option_words = " ".join(words[:split]), words[split:]
        grammar = Grammar(FILE_OPTIONS, abbreviations=True, where=where)
        options, positional = grammar.parse(option_words)
        if positional:
            raise InstallerUsageError(f"{where}: unexpected {positional[0]!r} after options")
        hashes = [f"--hash={value}" for option, value in options if option.role == "hash"]
        if requirement:
            if len(options) != len(hashes):
                raise InstallerUsageError(f"{where}: only --hash may follow a requirement")
            rendered = " ".join([requirement_line(requirement, where), *hashes])
            (self.constraints if constraint else self.requirements).append(rendered)
            return
        if hashes:
            raise InstallerUsageError(f"{where}: --hash must follow a requirement")
        for option, value in options:
            if option.role in ("requirements", "constraints"):
                assert value is not None
                nested = value if Path(value).is_absolute() or "://" in value \
                    else str(base / value)
                self.read(nested, constraint or option.role == "constraints", seen)
            else:
                self.options.extend(_render(option, value))

    def add(self, words: Iterable[str], where: str) -> None:
        self.requirements.extend(requirement_line(w, where) for w in words)

    def write(self, directory: Path) -> tuple[Path, Path | None]:
        """The flattened requirements file and constraints file (if any), in ``directory``."""
        requirements = directory / "requirements.txt"
        requirements.write_text("\n".join([*self.options, *self.requirements]) + "\n",
                                encoding="utf-8")
        if not self.constraints:
            return requirements, None
        constraints = directory / "constraints.txt"
        constraints.write_text("\n".join(self.constraints) + "\n", encoding="utf-8")
        return requirements, constraints


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """pip's reading of a requirements file: joined continuations, no comments, ``${VAR}``."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        if raw.endswith("\\") and not _COMMENT.match(raw):
            pending.append(raw[:-1])
            continue
        line = _COMMENT.sub("", "".join([*pending, raw])).strip()
        pending = []
        line = _ENV_VAR.sub(lambda m: os.environ.get(m.group(1), m.group(0)), line)
        if line:
            yield start, line
    if pending:
        line = _COMMENT.sub("", "".join(pending)).strip()
        if line:
            yield start, line


def _render(option: Option, value: str | None) -> list[str]:
    return [option.canonical] if value is None else [f"{option.canonical}={value}"]


@dataclass
class Invocation:
    """An installer's checked command, ready to run against custody's index."""

    #: The words after the program (and ``pip`` for uv), as custody renders them.
    args: list[str]
    #: The interpreter whose environment it changes (None: --target/--prefix/--root/--system,
    #: or a download).
    python: str | None
    #: False for subcommands that read no index (uninstall, freeze, ...): run untouched.
    uses_index: bool


def check(installer: str, words: Sequence[str], workdir: Path,
          python: str | None = None, virtual_env: str | None = None) -> Invocation:
    """Parse ``custody pip ...`` / ``custody uv pip ...`` (after the program name).

    ``workdir`` receives the flattened requirements files (it must outlive
    the installer's run). The target environment is ``python`` (custody's
    own ``--python``), else one named among the words, else ``virtual_env``
    (the active one), else none: a refusal, since custody's own environment
    is where its verifier lives and a plugin's dependencies there could
    replace it.
    """
    words = list(words)
    where = f"custody {installer}"
    if installer == "uv":
        if not words or words[0] != "pip":
            raise InstallerUsageError(f"{where}: custody runs 'uv pip' subcommands only "
                                      "(custody uv pip install NAME ...)")
        words = words[1:]
    if not words:
        raise InstallerUsageError(f"{where}: name a subcommand ({', '.join(CHECKED[installer])})")
    command, rest = words[0], words[1:]
    if command in PASS_THROUGH[installer]:
        if _names_environment(installer, rest):
            return Invocation([command, *rest], None, uses_index=False)
        target = python or _virtual_env(virtual_env)
        if target is None:
            raise _no_environment(where)
        return Invocation([command, *rest], target, uses_index=False)
    if command not in CHECKED[installer]:
        allowed = ", ".join((*CHECKED[installer], *PASS_THROUGH[installer]))
        raise InstallerUsageError(f"{where}: custody does not run {installer} {command} "
                                  f"(it runs {allowed})")
    grammar = Grammar(PIP_OPTIONS if installer == "pip" else UV_OPTIONS,
                      abbreviations=installer == "pip", where=where)
    options, positional = grammar.parse(rest)
    gathered = Requirements()
    if command == "sync":  # uv pip sync names requirements files, not requirements
        for path in positional:
            gathered.read(path, constraint=False)
    else:
        gathered.add(positional, where)
    rendered: list[str] = []
    named_python: str | None = None
    outside = command == "download"  # pip download writes files, into no environment
    for option, value in options:
        if option.role in ("requirements", "constraints"):
            assert value is not None
            gathered.read(value, constraint=option.role == "constraints")
        elif option.role == "python":
            named_python = value
        else:
            outside = outside or option.role == "target" or option.canonical == "--system"
            rendered += _render(option, value)
    helping = any(option.canonical == "--help" for option, _ in options)
    if not gathered.requirements and not helping:
        raise InstallerUsageError(f"{where}: name at least one requirement to {command}")
    target = python or named_python or (None if outside else _virtual_env(virtual_env))
    if target is None and not outside and not helping:
        raise _no_environment(where)
    requirements, constraints = gathered.write(workdir)
    files = [str(requirements)] if command == "sync" else ["-r", str(requirements)]
    if constraints:
        files += ["-c", str(constraints)]
    return Invocation([command, *rendered, *files], target, True)


def _names_environment(installer: str, words: Sequence[str]) -> bool:
    """Whether an untouched command line chooses its own environment (or directory)."""
    names = {"--python", "--target", "-t", "--prefix"} | (
        {"-p", "--system"} if installer == "uv" else {"--root"})
    return any(w.split("=", 1)[0] in names or (installer == "uv" and w.startswith("-p"))
               for w in words)


def _virtual_env(virtual_env: str | None) -> str | None:
    """The active virtual environment's interpreter, unless it is custody's own."""
    if not virtual_env:
        return None
    if Path(virtual_env).resolve() == Path(sys.prefix).resolve():
        return None
    return str(Path(virtual_env) / "bin" / "python")


def _no_environment(where: str) -> InstallerUsageError:
    return InstallerUsageError(
        f"{where}: no environment to install into; activate a virtual environment or name "
        "one with --python (custody never installs into its own environment)")
