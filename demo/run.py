"""``make demo``: the whole custody story on 127.0.0.1, through the real command lines.

Keys, an owner-signed layout published through the ``layouts`` role, a
recorded supply chain (a developer tags, two rebuilders build reproducibly,
a packager packs), a repository served by gunicorn, a release pushed through
the publish API, a client that installs and updates, an agent that updates
itself and rolls back, a trojaned release refused, a revoked developer
key that the client follows, a staged rollout, and a keyless step (a real
GitHub release workflow's Sigstore bundle) before pip installs the plugin.
Exits 0 only if every outcome was the expected one; leaves the served tree
in build/demo/public and the trust anchor in build/demo/root.json.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD = HERE.parent / "build" / "demo"
BIN = Path(sys.executable).parent
KEYS = BUILD / "keys"
REPO = BUILD / "repo"
HOME = BUILD / "client"
ENV = {**os.environ, "CUSTODY_KEY_PASSWORD": "demo-password", "PYTHONPATH": str(HERE.parent)}

LAYOUT = """
expires_in_days = 365
readme = "{name}: a developer tags, two rebuilders build reproducibly, a packager packs"

[keys]
developer = "keys/{developer}.pub"
packager = "keys/bob.pub"
rebuilder1 = "keys/rb1.pub"
rebuilder2 = "keys/rb2.pub"

[[steps]]
name = "tag"
functionaries = ["developer"]
products = ["CREATE src/*", "DISALLOW *"]

[[steps]]
name = "build"
functionaries = ["rebuilder1", "rebuilder2"]
threshold = 2
materials = ["MATCH src/* WITH PRODUCTS FROM tag", "DISALLOW *"]
products = ["CREATE dist/{name}.tar.gz", "DISALLOW *"]

[[steps]]
name = "package"
functionaries = ["packager"]
materials = ["MATCH dist/{name}.tar.gz WITH PRODUCTS FROM build", "DISALLOW *"]
products = ["MATCH {name}.tar.gz WITH PRODUCTS IN dist FROM build", "DISALLOW *"]
"""

failures: list[str] = []
step_number = 0


def headline(text: str) -> None:
    global step_number
    step_number += 1
    print(f"\n== {step_number}. {text}", flush=True)


def run(*args: object, expect: int = 0, contains: str | None = None,
        cwd: Path = BUILD, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    """Run a command; record a failure unless it exits ``expect`` (and says ``contains``)."""
    cmd = [str(a) for a in args]
    result = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True,
                            timeout=300, check=False)
    shown = " ".join(Path(c).name if c.startswith(str(BIN)) else c for c in cmd)
    ok = result.returncode == expect and (contains is None or contains in
                                          result.stdout + result.stderr)
    if not quiet or not ok:
        print(f"   $ {shown[:150]}")
        for line in (result.stdout + result.stderr).strip().splitlines()[-4:]:
            print(f"     {line}")
    if not ok:
        failures.append(f"{shown}: exit {result.returncode}, expected {expect}"
                        + (f" and {contains!r}" if contains else ""))
        print(f"   !! unexpected outcome (exit {result.returncode})")
    return result


def show_toml(path: Path) -> None:
    """The layout description the owner signs, shown before it is signed."""
    print(f"   {path.name}, to be signed by the project owner:")
    for line in path.read_text().strip().splitlines():
        print(f"     | {line}")


def tool(name: str) -> Path:
    return BIN / name


def record_release(name: str, version: str, developer: str = "alice",
                   message: str | None = None, attacker: bool = False) -> Path:
    """Perform the three steps of the chain with custody-intoto run; return the links dir."""
    work = BUILD / "work" / f"{name}-{version}-{developer}"
    shutil.rmtree(work, ignore_errors=True)
    links = work / "links"
    links.mkdir(parents=True)
    steps = [sys.executable, HERE / "steps.py"]

    def key(who: str) -> Path:  # the attacker has no functionary key: mallory signs all
        return KEYS / ("mallory" if attacker else who)

    tag_ws = work / "tag"
    tag_ws.mkdir()
    run(tool("custody-intoto"), "run", "-n", "tag", "--signing-key", key(developer),
        "-p", "src", "-d", links, "--", *steps, "tag", name, version, *(
            [message] if message else []), cwd=tag_ws)
    for rebuilder in ("rb1", "rb2"):
        ws = work / rebuilder
        shutil.copytree(tag_ws / "src", ws / "src")
        run(tool("custody-intoto"), "run", "-n", "build", "--signing-key", key(rebuilder),
            "-m", "src", "-p", "dist", "-d", links, "--", *steps,
            "trojan" if attacker else "build", cwd=ws)
    pack = work / "pack"
    shutil.copytree(work / "rb1" / "dist", pack / "dist")
    run(tool("custody-intoto"), "run", "-n", "package", "--signing-key", key("bob"),
        "-m", "dist", "-p", f"{name}.tar.gz", "-d", links, "--", "cp",
        f"dist/{name}.tar.gz", f"{name}.tar.gz", cwd=pack)
    print(f"   recorded {name} {version}: {', '.join(sorted(p.name for p in links.iterdir()))}")
    return work


def push(name: str, version: str, work: Path, url: str, token: str, expect: int = 0,
         contains: str | None = None, no_channel: bool = False) -> None:
    layout = BUILD / f"{name}.layout"
    run(tool("custody-repo"), "push", work / "pack" / f"{name}.tar.gz", "--server", url,
        "--token", token, "--name", name, "--version", version, "--layout", layout,
        "--links", work / "links", *(["--no-channel"] if no_channel else []), expect=expect,
        contains=contains)


def installed(name: str) -> str:
    state = json.loads((HOME / "state.json").read_text())
    return state["packages"][name]["current"]


def check(condition: bool, what: str) -> None:
    print(f"   {'ok' if condition else '!!'}: {what}")
    if not condition:
        failures.append(what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    shutil.rmtree(BUILD, ignore_errors=True)
    KEYS.mkdir(parents=True)

    headline("Keys: an owner, two developers (alice, bob), two rebuilders, and carol")
    for who in ("owner", "alice", "bob", "rb1", "rb2", "carol", "mallory"):
        run(tool("custody-keys"), "generate", KEYS / who, quiet=True)
    print("   ed25519 keys, encrypted (password from CUSTODY_KEY_PASSWORD), in build/demo/keys")

    headline("A repository (custody-repo init) and owner-signed layouts in its 'layouts' role")
    run(tool("custody-repo"), "init", REPO, "--bins", "16", "--layout-key", KEYS / "owner")
    for name in ("hello", "agent"):
        (BUILD / f"{name}.toml").write_text(LAYOUT.format(name=name, developer="alice"))
        show_toml(BUILD / f"{name}.toml")
        run(tool("custody-intoto"), "layout", "new", f"{name}.toml", "-k", KEYS / "owner",
            "-o", f"{name}.layout")
        run(tool("custody-repo"), "layout", "add", REPO, f"{name}.layout", "--key",
            KEYS / "owner", "--new")

    headline("The supply chain of hello 1.0.0, each step recorded with custody-intoto run")
    hello_1 = record_release("hello", "1.0.0")

    headline("The repository served by gunicorn; the release pushed through the publish API")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([str(tool("custody-repo")), "serve", str(REPO), "--port",
                               str(port), "--workers", "2"], env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        print(f"   serving {REPO / 'public'} at {url}")
        token = run(tool("custody-repo"), "token", "create", REPO, "ci",
                    quiet=True).stdout.strip()
        push("hello", "1.0.0", hello_1, url, token)
        story(url, token)
        rollout(url, token)
        plugin(url, token)
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    shutil.copytree(REPO / "public", BUILD / "public")
    shutil.copy(REPO / "public" / "metadata" / "1.root.json", BUILD / "root.json")
    print(f"\nserved tree left in {BUILD / 'public'}, trust anchor in {BUILD / 'root.json'}")
    if failures:
        print(f"\ndemo FAILED: {len(failures)} unexpected outcome(s):")
        for failure in failures:
            print(f" - {failure}")
        return 1
    print("\ndemo passed: every outcome was the expected one")
    return 0


PLUGIN_LAYOUT = """
expires_in_days = 365
readme = "rfc8785: the wheel PyPI serves, released by its GitHub workflow (keyless), checked by bob"

[keys]
packager = "keys/bob.pub"

[[steps]]
name = "package"
functionaries = ["packager"]
products = ["CREATE {artifact}", "DISALLOW *"]

[[steps]]
name = "release"
products = ["CREATE {artifact}", "DISALLOW *"]
[[steps.keyless]]
issuer = "https://token.actions.githubusercontent.com"
identity = "https://github.com/trailofbits/rfc8785.py/.github/workflows/WORKFLOW@refs/tags/*"
"""


def plugin(url: str, token: str) -> None:
    """A keyless release, then a plugin host installing it with pip through custody."""
    headline("A keyless step: rfc8785's own GitHub release workflow is a functionary; its real "
             "Sigstore bundle, verified offline with a trusted root the owners publish")
    data = HERE.parent / "tests/data"
    wheel = data / "rfc8785-0.1.2-py3-none-any.whl"
    (BUILD / "rfc8785.toml").write_text(PLUGIN_LAYOUT.replace("WORKFLOW", "release.yml"))
    show_toml(BUILD / "rfc8785.toml")
    run(tool("custody-intoto"), "layout", "new", "rfc8785.toml", "-k", KEYS / "owner", "-o",
        "rfc8785.layout")
    run(tool("custody-repo"), "layout", "add", REPO, "rfc8785.layout", "--key", KEYS / "owner",
        "--new")
    run(tool("custody-repo"), "sigstore-root", "set", REPO,
        data / "sigstore/production.trusted_root.json", "--key", KEYS / "owner",
        contains="published in-toto/layouts/sigstore.trusted_root.json")
    work = BUILD / "work" / "rfc8785"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copy(wheel, work / wheel.name)
    run(tool("custody-intoto"), "run", "-n", "package", "--signing-key", KEYS / "bob", "-p",
        wheel.name, "-d", work / "links", "--no-command", cwd=work)
    bundle = work / f"release.{wheel.name}.sigstore.json"
    shutil.copy(data / f"sigstore/{wheel.name}.sigstore.json", bundle)
    # A layout naming another workflow of the same repository refuses the very same bundle.
    (BUILD / "nightly.toml").write_text(PLUGIN_LAYOUT.replace("WORKFLOW", "nightly.yml"))
    run(tool("custody-intoto"), "layout", "new", "nightly.toml", "-k", KEYS / "owner", "-o",
        "nightly.layout", quiet=True)
    verify_dir = work / "evidence"
    verify_dir.mkdir()
    for evidence in [bundle, *(work / "links").glob("*.link")]:
        shutil.copy(evidence, verify_dir / evidence.name)
    shutil.copy(wheel, verify_dir / wheel.name)
    run(tool("custody-intoto"), "verify", "--layout", BUILD / "nightly.layout",
        "--verification-keys", KEYS / "owner.pub", "--link-dir", ".", "--trusted-root",
        data / "sigstore/production.trusted_root.json", cwd=verify_dir, expect=1,
        contains="is not one the layout names")
    run(tool("custody-repo"), "push", work / wheel.name, "--server", url, "--token", token,
        "--name", "rfc8785", "--version", "0.1.2", "--layout", BUILD / "rfc8785.layout",
        "--links", work / "links", "--attestation", bundle,
        contains="published packages/rfc8785/0.1.2/")

    headline("A plugin host: custody pip install rfc8785 into a fresh venv (TUF, then in-toto "
             "with the keyless step, offline)")
    venv = BUILD / "plugin-venv"
    shutil.rmtree(venv, ignore_errors=True)
    run(sys.executable, "-m", "venv", "--without-pip", venv, quiet=True)
    run(tool("custody"), "--home", HOME, "pip", "--python", venv / "bin/python", "install",
        "rfc8785", contains="Successfully installed rfc8785-0.1.2")
    run(venv / "bin/python", "-c", "import rfc8785; print(rfc8785.dumps({'b': 1, 'a': 2}))",
        contains='{"a":2,"b":1}')


def rollout(url: str, token: str) -> None:
    """A staged rollout across a small fleet, then the dashboard's address."""
    from custody.formats.index import rollout_bucket

    headline("A staged rollout: hello 1.5.0 to 50% of a fleet of eight hosts, then to all")
    push("hello", "1.5.0", record_release("hello", "1.5.0", developer="carol"), url, token,
         no_channel=True)
    fleet = [BUILD / "fleet" / f"host{i}" for i in range(8)]
    for home in fleet:
        run(tool("custody"), "--home", home, "init", "--url", url, "--root",
            REPO / "public" / "metadata" / "1.root.json", quiet=True)
        run(tool("custody"), "--home", home, "install", "hello", quiet=True)
    run(tool("custody-repo"), "rollout", "start", REPO, "hello", "stable", "1.5.0",
        "--percent", "50", "--max-failure-rate", "0.2", "--min-reports", "4",
        contains="1.5.0 at 50% (active)")
    for percent in ("50", "100"):
        if percent == "100":
            run(tool("custody-repo"), "rollout", "raise", REPO, "hello", "stable", percent)
        moved = []
        for home in fleet:
            run(tool("custody"), "--home", home, "update", quiet=True)
            moved.append(json.loads((home / "state.json").read_text())["packages"]["hello"]
                         ["current"] == "1.5.0")
        print(f"   at {percent}%: hosts on 1.5.0: "
              + " ".join("#" if m else "." for m in moved))
        expected = [rollout_bucket(json.loads((home / "config.json").read_text())
                                   ["client_id"], "hello") < float(percent) for home in fleet]
        check(moved == expected, f"at {percent}% exactly the hosts whose bucket is below "
                                 f"{percent} moved ({sum(moved)} of {len(fleet)})")
    run(tool("custody-repo"), "rollout", "complete", REPO, "hello", "stable",
        contains="hello stable -> 1.5.0")
    operator = run(tool("custody-repo"), "token", "create", REPO, "ops", "--scope",
                   "operator", quiet=True).stdout.strip()
    scraper = run(tool("custody-repo"), "token", "create", REPO, "prometheus", "--scope",
                  "metrics", quiet=True).stdout.strip()
    print(f"   the operator's dashboard: {url}/ui (sign in with an operator token: "
          f"custody-repo token create REPO NAME --scope operator); metrics at {url}/metrics "
          "(a metrics token: --scope metrics)")
    try:
        urllib.request.urlopen(url + "/metrics", timeout=10)
        refused = False
    except urllib.error.HTTPError as exc:
        refused = exc.code == 401
    check(refused, "/metrics refused without a metrics token")
    scrape = urllib.request.Request(url + "/metrics",
                                    headers={"Authorization": f"Bearer {scraper}"})
    with urllib.request.urlopen(scrape, timeout=10) as response:
        check(b"custody_role_expiry_seconds" in response.read(),
              "Prometheus metrics served to its token")
    check(operator.startswith("cst_"), "an operator token for the dashboard")


def story(url: str, token: str) -> None:
    headline("A fresh client installs hello, then follows hello 1.1.0 on stable")
    run(tool("custody"), "--home", HOME, "init", "--url", url, "--root",
        REPO / "public" / "metadata" / "1.root.json")
    run(tool("custody"), "--home", HOME, "install", "hello", contains="installed hello 1.0.0")
    run(sys.executable, HOME / "packages/hello/current/src/hello.py",
        contains="hello from hello 1.0.0")
    push("hello", "1.1.0", record_release("hello", "1.1.0"), url, token)
    run(tool("custody"), "--home", HOME, "update", "hello",
        contains="updated hello 1.0.0 -> 1.1.0")

    headline("An agent updates itself; its new version fails the health check and rolls back")
    push("agent", "1.0.0", record_release("agent", "1.0.0"), url, token)
    run(tool("custody"), "--home", HOME, "install", "agent")
    run(tool("custody"), "--home", HOME, "health-check", "set", "agent", "--timeout", "20",
        "--", sys.executable, "src/agent.py", "--health", contains="timeout 20 s")
    push("agent", "2.0.0", record_release("agent", "2.0.0", message="unhealthy"), url, token)
    run(tool("custody"), "--home", HOME, "update", expect=4,
        contains="agent 2.0.0 failed its health check (exit code 1); rolled back to 1.0.0")
    check(installed("agent") == "1.0.0", "the agent runs 1.0.0 again")
    headline("The next poll skips the known-bad build instead of installing it again")
    run(tool("custody"), "--home", HOME, "update", contains="agent 2.0.0 is known bad")
    run(tool("custody"), "--home", HOME, "list", contains="failed 2.0.0: failed its health "
        "check (exit code 1: agent 2.0.0: cannot open its state database)")
    push("agent", "2.0.1", record_release("agent", "2.0.1"), url, token)
    run(tool("custody"), "--home", HOME, "update", "agent",
        contains="updated agent 1.0.0 -> 2.0.1")

    headline("Attack: a trojaned hello 1.2.0 published with the server's online keys")
    before = (HOME / "state.json").read_bytes()
    evil = record_release("hello", "1.2.0", attacker=True)
    run(sys.executable, HERE / "attacker.py", REPO, "hello", "1.2.0",
        evil / "pack" / "hello.tar.gz", evil / "links")
    run(tool("custody"), "--home", HOME, "update", "hello", expect=1,
        contains="in-toto refused hello 1.2.0")
    check((HOME / "state.json").read_bytes() == before, "the client stays on hello 1.1.0")
    run(tool("custody-repo"), "remove", REPO, "hello", "1.2.0", quiet=True)

    headline("Key rotation: alice's key is revoked by a new layout; the client follows")
    (BUILD / "hello.toml").write_text(LAYOUT.format(name="hello", developer="carol"))
    show_toml(BUILD / "hello.toml")
    # --force: hello.layout holds the published layout naming alice, which this one replaces
    run(tool("custody-intoto"), "layout", "new", "hello.toml", "-k", KEYS / "owner",
        "-o", "hello.layout", "--force")
    # alice built the stable 1.1.0: the new layout strands it, so the owner confirms with --yes
    run(tool("custody-repo"), "layout", "add", REPO, "hello.layout", "--key", KEYS / "owner",
        expect=1, contains="hello 1.1.0 (the stable channel's version) would no longer install")
    run(tool("custody-repo"), "layout", "add", REPO, "hello.layout", "--key", KEYS / "owner",
        "--yes", contains="published in-toto/layouts/hello.2.layout")
    push("hello", "1.3.0", record_release("hello", "1.3.0", developer="carol"), url, token)
    run(tool("custody"), "--home", HOME, "update", "hello",
        contains="updated hello 1.1.0 -> 1.3.0")
    revoked = record_release("hello", "1.4.0", developer="alice")
    push("hello", "1.4.0", revoked, url, token, expect=1,
         contains="step 'tag' requires 1 link(s) by its functionaries, found 0")
    run(sys.executable, HERE / "attacker.py", REPO, "hello", "1.4.0",
        revoked / "pack" / "hello.tar.gz", revoked / "links")
    run(tool("custody"), "--home", HOME, "update", "hello", expect=1,
        contains="step 'tag' requires 1 link(s) by its functionaries, found 0")
    check(installed("hello") == "1.3.0", "the client stays on hello 1.3.0")
    headline("Clean up: the refused release leaves the served tree")
    run(tool("custody-repo"), "remove", REPO, "hello", "1.4.0")
    run(tool("custody"), "--home", HOME, "update", contains="hello 1.3.0 is up to date")


if __name__ == "__main__":
    sys.exit(main())
