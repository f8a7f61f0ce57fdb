"""custody pip/uv: the installer's inputs are checked by meaning, not spelling (issue 26).

pip's own parsers are the oracle here (tests only: custody never imports pip):
whatever pip would read as another package source from the user's words,
custody must refuse; whatever custody renders, pip must read with no source.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from custody.client.errors import InstallerUsageError
from custody.client.installer import PIP_OPTIONS, check, requirement_line

EXAMPLES = int(os.environ.get("CUSTODY_FUZZ_EXAMPLES", "300"))
VENV = "/opt/host/venv"

pip_commands = pytest.importorskip("pip._internal.commands")


def pip_reads(words: list[str]):
    """pip install's own reading of ``words`` (its optparse parser, no configuration)."""
    import contextlib
    import io

    command = pip_commands.create_command("install", isolated=True)
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            options, args = command.parse_args(list(words))
    except SystemExit:
        return None  # pip would stop with a usage error: nothing is installed
    return options, args


def pip_sources(options) -> list[str]:
    """What in pip's parsed options names a package source other than custody's index."""
    found = []
    if options.index_url != "https://pypi.org/simple":
        found.append("index_url")
    for name in ("extra_index_urls", "find_links", "trusted_hosts", "editables"):
        if getattr(options, name, None):
            found.append(name)
    if options.no_index:
        found.append("no_index")
    return found


def refused(installer: str, words: list[str], tmp_path: Path) -> str | None:
    try:
        check(installer, words, tmp_path, virtual_env=VENV)
    except InstallerUsageError as exc:
        return str(exc)
    return None


# -- the spellings of the issue, each refused before the installer runs --------
@pytest.mark.parametrize("words", [
    ["install", "--find-link", "/tmp/evil", "hostplug-b"],
    ["install", "--extra-index", "file:///tmp/evil", "hostplug-b"],
    ["install", "--extra-index-url=https://pypi.org/simple", "hostplug-b"],
    ["install", "--index-url", "http://127.0.0.1:9/", "hostplug-b"],
    ["install", "--pypi-url", "http://127.0.0.1:9/", "hostplug-b"],
    ["install", "--pypi", "http://127.0.0.1:9/", "hostplug-b"],
    ["install", "-ihttp://127.0.0.1:9/", "hostplug-b"],
    ["install", "-f/tmp/evil", "hostplug-b"],
    ["install", "-qqf", "/tmp/evil", "hostplug-b"],
    ["install", "--no-index", "hostplug-b"],
    ["install", "--trusted", "evil.example", "hostplug-b"],
    ["install", "-e", ".", "hostplug-b"],
    ["install", "--requirements-from-script", "x.py"],
    ["install", "hostplug-b", "six @ file:///tmp/evil/six-1.0-py3-none-any.whl"],
    ["install", "git+https://example.com/evil.git"],
    ["install", "/tmp/evil/hostplug_a-9.9.9-py3-none-any.whl"],
    ["install", "hostplug_a-9.9.9-py3-none-any.whl"],
    ["install", "./plugin"],
    ["install", "https://example.com/hostplug_a-9.9.9.tar.gz"],
])
def test_pip_spellings_of_another_source_are_refused(words, tmp_path):
    said = refused("pip", words, tmp_path)
    assert said is not None, words
    assert "\n" not in said and said.startswith("custody pip: ")


@pytest.mark.parametrize("words", [
    ["pip", "install", "--index", "http://127.0.0.1:9/", "hostplug-b"],
    ["pip", "install", "--default-index=http://127.0.0.1:9/", "hostplug-b"],
    ["pip", "install", "--extra-index-url", "http://127.0.0.1:9/", "hostplug-b"],
    ["pip", "install", "-f", "/tmp/evil", "hostplug-b"],
    ["pip", "install", "--find-link", "/tmp/evil", "hostplug-b"],  # no abbreviations in clap
    ["pip", "install", "--config-file", "uv.toml", "hostplug-b"],
    ["pip", "install", "--index-strategy", "unsafe-best-match", "hostplug-b"],
    ["pip", "install", "hostplug-b", "six @ file:///tmp/six.whl"],
    ["pip", "install", "--group", "dev"],
    ["pip", "compile", "requirements.in"],
    ["venv"],
])
def test_uv_spellings_of_another_source_are_refused(words, tmp_path):
    said = refused("uv", words, tmp_path)
    assert said is not None and said.startswith("custody uv: "), words


@pytest.mark.parametrize("line", [
    "--extra-index-url https://pypi.org/simple",
    "--extra-index https://pypi.org/simple",
    "-f /tmp/evil",
    "-f/tmp/evil",
    "--find-links=/tmp/evil",
    "-i http://127.0.0.1:9/",
    "--index-url=http://127.0.0.1:9/",
    "--no-index",
    "--trusted-host evil.example",
    "-e git+https://example.com/x.git#egg=x",
    "six @ file:///tmp/six.whl",
    "hostplug-a==1.0 --global-option=x",
    "./vendor/hostplug_a-9.9.9-py3-none-any.whl",
    "https://example.com/x-1.0.tar.gz",
])
@pytest.mark.parametrize("depth", [0, 1, 2])
def test_requirements_files_are_read_recursively_by_meaning(line, depth, tmp_path):
    """A source in a requirements file, however deep (-r or -c), is refused."""
    (tmp_path / "deep0.txt").write_text(f"hostplug-b\n# a comment\n{line}\n")
    for n in range(1, depth + 1):
        flag = "-c" if n % 2 else "-r"
        (tmp_path / f"deep{n}.txt").write_text(f"hostplug-b>=1\n{flag} deep{n - 1}.txt\n")
    work = tmp_path / "work"
    work.mkdir()
    said = refused("pip", ["install", "-r", str(tmp_path / f"deep{depth}.txt")], work)
    assert said is not None and "deep0.txt:3: " in said, said
    assert refused("uv", ["pip", "sync", str(tmp_path / f"deep{depth}.txt")], work)


def test_a_clean_requirements_tree_is_flattened_for_the_installer(tmp_path, monkeypatch):
    digest = "0" * 64
    monkeypatch.setenv("PLUGIN_VERSION", "1.0")
    (tmp_path / "constraints.txt").write_text("hostplug-a<2  # pin\n")
    (tmp_path / "more.txt").write_text("--prefer-binary\nHostPlug_A \\\n  >=1.0\n")
    (tmp_path / "req.txt").write_text(
        f"hostplug-b==${{PLUGIN_VERSION}} --hash=sha256:{digest}\n-r more.txt\n"
        "-c constraints.txt\n")
    work = tmp_path / "work"
    work.mkdir()
    invocation = check("pip", ["install", "-U", "--require-hashes", "-r",
                               str(tmp_path / "req.txt")], work, virtual_env=VENV)
    assert invocation.python == f"{VENV}/bin/python" and invocation.uses_index
    assert invocation.args == ["install", "--upgrade", "--require-hashes",
                               "-r", str(work / "requirements.txt"),
                               "-c", str(work / "constraints.txt")]
    assert (work / "requirements.txt").read_text().splitlines() == [
        "--prefer-binary", f"hostplug-b==1.0 --hash=sha256:{digest}", "hostplug-a>=1.0"]
    assert (work / "constraints.txt").read_text() == "hostplug-a<2\n"
    # pip reads custody's rendering as custody meant it, with no other source.
    from pip._internal.network.session import PipSession
    from pip._internal.req.req_file import parse_requirements

    parsed = list(parse_requirements(str(work / "requirements.txt"), PipSession()))
    assert [p.requirement for p in parsed] == ["hostplug-b==1.0", "hostplug-a>=1.0"]


def test_the_environment_is_chosen_never_custodys_own(tmp_path):
    import sys

    with pytest.raises(InstallerUsageError, match="no environment to install into"):
        check("pip", ["install", "x"], tmp_path, virtual_env=None)
    with pytest.raises(InstallerUsageError, match="never installs into its own"):
        check("pip", ["install", "x"], tmp_path, virtual_env=sys.prefix)
    assert check("pip", ["install", "x"], tmp_path, python="/p/python",
                 virtual_env=VENV).python == "/p/python"
    assert check("pip", ["install", "--target", "d", "x"], tmp_path).python is None
    assert check("pip", ["download", "-d", "d", "x"], tmp_path).python is None
    assert check("uv", ["pip", "install", "--system", "x"], tmp_path).python is None
    # uninstall, freeze ... run untouched, into the chosen environment
    untouched = check("pip", ["uninstall", "-y", "--extra", "x"], tmp_path, virtual_env=VENV)
    assert untouched.args == ["uninstall", "-y", "--extra", "x"] and not untouched.uses_index
    with pytest.raises(InstallerUsageError, match="no environment"):
        check("uv", ["pip", "freeze"], tmp_path)
    assert check("uv", ["pip", "freeze", "-p", "/p/python"], tmp_path).python is None


# -- generated spellings, with pip's own parser as the oracle -----------------------
_LONG = sorted({name for option in PIP_OPTIONS for name in option.names if name[1] == "-"}
               | {"--index-url", "--extra-index-url", "--find-links", "--no-index",
                  "--pypi-url", "--trusted-host", "--editable"})
_SHORT = sorted({name for option in PIP_OPTIONS for name in option.names if name[1] != "-"})
_VALUES = st.sampled_from(["/tmp/evil", "http://127.0.0.1:9/simple", "file:///tmp/evil",
                           ":all:", "3.11", "x"])


@st.composite
def pip_words(draw) -> list[str]:
    words: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["long", "long=", "short", "cluster", "name"]))
        if kind in ("long", "long="):
            name = draw(st.sampled_from(_LONG))
            cut = draw(st.integers(min(len(name), 5), len(name)))
            word = name[:cut]
            words += [f"{word}={draw(_VALUES)}"] if kind == "long=" else [word, draw(_VALUES)]
        elif kind == "short":
            words += [draw(st.sampled_from(_SHORT)) + draw(st.sampled_from(["", "/tmp/evil"]))]
        elif kind == "cluster":
            flags = draw(st.lists(st.sampled_from(["q", "v", "U", "I"]), min_size=1, max_size=3))
            last = draw(st.sampled_from(["", "f", "i", "t", "r"]))
            words += ["-" + "".join(flags) + last, draw(_VALUES)] if last \
                else ["-" + "".join(flags)]
        else:
            words.append(draw(st.sampled_from(["hostplug-b", "HostPlug_A>=1", "six @ file:///x",
                                               "./dir", "x.whl", "git+https://e/x"])))
    return words


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=pip_words())
def test_whatever_pip_reads_as_a_source_custody_refuses(words, tmp_path):
    """For generated spellings: pip's parser finds a source => custody refused them."""
    assume("-r" not in words and not any(w.startswith(("-r", "--req")) for w in words))
    read = pip_reads(words)
    said = refused("pip", ["install", *words], tmp_path)
    if read is not None and pip_sources(read[0]):
        assert said is not None, (words, pip_sources(read[0]))
    if said is None:  # accepted: custody's rendering, read by pip, names no other source
        invocation = check("pip", ["install", *words], tmp_path, virtual_env=VENV)
        rendered = pip_reads(invocation.args[1:])
        if rendered is None:  # pip refuses custody's rendering only where it refused the user's
            assert read is None, invocation.args
        else:
            assert not pip_sources(rendered[0]), invocation.args
        lines = (tmp_path / "requirements.txt").read_text().split()
        assert not any("/" in w or "@" in w for w in lines if not w.startswith("--"))


_REQUIREMENT_SOURCES = st.one_of(
    st.builds(lambda n, u: f"{n} @ {u}", st.sampled_from(["six", "a.b", "X_Y"]),
              st.sampled_from(["file:///tmp/x.whl", "https://e/x.tar.gz", "git+https://e/x"])),
    st.builds(lambda p, f: f"{p}{f}", st.sampled_from(["./", "../", "/tmp/", "sub/"]),
              st.sampled_from(["x", "x-1.0-py3-none-any.whl", "x-1.0.tar.gz"])),
    st.builds(lambda s, r: f"{s}://e.example/{r}",
              st.sampled_from(["http", "https", "git+https", "hg+http", "svn+ssh"]),
              st.sampled_from(["x", "x.git#egg=x", "x-1.0.zip"])),
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(text=_REQUIREMENT_SOURCES)
def test_a_requirement_naming_its_own_source_is_refused(text):
    from pip._internal.exceptions import InstallationError
    from pip._internal.req.constructors import install_req_from_line

    # pip reads it as a direct source (or a path that is not there), never as a name
    with contextlib.suppress(InstallationError):
        assert install_req_from_line(text).link is not None
    with pytest.raises(InstallerUsageError):
        requirement_line(text, "here")


@settings(max_examples=EXAMPLES, deadline=None)
@given(name=st.from_regex(r"[A-Za-z][A-Za-z0-9._-]{0,20}[A-Za-z0-9]", fullmatch=True),
       spec=st.sampled_from(["", ">=1", "==1.0", "[extra]<2", " ; python_version>'3'"]))
def test_a_requirement_by_name_is_rendered_as_pip_reads_it_by_name(name, spec):
    from pip._internal.req.constructors import install_req_from_line

    assume(not name.lower().endswith((".whl", ".zip", ".tar", ".tgz", ".tbz", ".txz",
                                      ".tlz")))
    rendered = requirement_line(name + spec, "here")
    assert install_req_from_line(rendered).link is None  # an index lookup, by name
