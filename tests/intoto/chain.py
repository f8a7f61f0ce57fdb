"""A small real supply chain, recorded and verified by either implementation.

The chain of the ``hello`` plugin: alice writes the source (``clone``), two
rebuilders build it reproducibly (``build``, threshold 2), bob packages it
(``package``), and the verifier's inspection unpacks the tarball and checks
its contents against what alice wrote. `Reference` drives in-toto 3.1.0's
library, `Custody` ours; tests mix them freely to prove interoperability.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from custody.intoto.metadata import key_to_dict, load_metadata
from custody.intoto.models import Inspection, Layout, Step
from custody.keys_tooling.keys import load_public_key, load_signer

BUILD_SCRIPT = """
import gzip, io, os, tarfile, sys
os.makedirs('dist', exist_ok=True)
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode='w', format=tarfile.GNU_FORMAT) as tar:
    for name in sorted(os.listdir('src')):
        info = tar.gettarinfo('src/' + name)
        info.mtime = 0; info.uid = info.gid = 0; info.uname = info.gname = ''
        info.mode = 0o644
        with open('src/' + name, 'rb') as f:
            tar.addfile(info, f)
    if len(sys.argv) > 1:  # a trojaned build adds a file
        data = sys.argv[1].encode()
        info = tarfile.TarInfo('src/backdoor.py'); info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
with open('dist/hello.tar.gz', 'wb') as f:
    f.write(gzip.compress(buf.getvalue(), mtime=0))
"""

WRITE_SCRIPT = """
import os, sys
message = sys.argv[1] if len(sys.argv) > 1 else 'hello'
os.makedirs('src', exist_ok=True)
open('src/hello.py', 'w').write('print(%r)\\n' % message)
open('src/README', 'w').write('hello plugin\\n')
if len(sys.argv) > 2:  # a payload of N MiB, incompressible, so versions are that large
    open('src/payload.bin', 'wb').write(os.urandom(int(sys.argv[2]) << 20))
"""

# The same, with a payload drawn from a seed: versions that share most of their bytes
# (what delta updates are for), as consecutive releases of real software do.
SEEDED_WRITE_SCRIPT = WRITE_SCRIPT.replace("import os, sys", "import os, random, sys").replace(
    "os.urandom(int(sys.argv[2]) << 20)", "random.Random(int(sys.argv[3])).randbytes("
    "int(sys.argv[2]) << 20)")


class Impl(Protocol):
    name: str

    def run(self, step: str, key: Path, materials: list[str], products: list[str],
            command: list[str], cwd: Path, dsse: bool) -> None: ...

    def sign_layout(self, layout: dict[str, Any], keys: list[Path], out: Path,
                    dsse: bool) -> None: ...

    def verify(self, layout: Path, keys: list[Path], link_dir: Path, workdir: Path) -> None: ...


class Reference:
    """in-toto 3.1.0, through its library (what its CLIs call)."""

    name = "in-toto"

    def run(self, step, key, materials, products, command, cwd, dsse):
        from in_toto.models._signer import load_crypto_signer_from_pkcs8_file
        from in_toto.runlib import in_toto_run

        with contextlib.chdir(cwd):
            in_toto_run(step, materials, products, command, record_streams=False,
                        signer=load_crypto_signer_from_pkcs8_file(str(key)),
                        metadata_directory=str(cwd), use_dsse=dsse)

    def sign_layout(self, layout, keys, out, dsse):
        from in_toto.models._signer import load_crypto_signer_from_pkcs8_file
        from in_toto.models.layout import Layout as RefLayout
        from in_toto.models.metadata import Envelope, Metablock

        ref = RefLayout.read(json.loads(json.dumps(layout)))
        metadata = Envelope.from_signable(ref) if dsse else Metablock(signed=ref)
        for key in keys:
            metadata.create_signature(load_crypto_signer_from_pkcs8_file(str(key)))
        metadata.dump(str(out))

    def verify(self, layout, keys, link_dir, workdir):
        from in_toto.models._signer import load_public_key_from_file
        from in_toto.models.metadata import Metadata
        from in_toto.verifylib import in_toto_verify

        key_dict = {}
        for path in keys:
            key = load_public_key_from_file(str(path))
            key_dict[key["keyid"]] = key
        with contextlib.chdir(workdir):
            in_toto_verify(Metadata.load(str(layout)), key_dict, link_dir_path=str(link_dir),
                           persist_inspection_links=False)


class Custody:
    """custody's intoto package."""

    name = "custody"

    def run(self, step, key, materials, products, command, cwd, dsse):
        from custody.intoto.artifacts import ArtifactRecorder
        from custody.intoto.runner import StepRecorder

        recorder = StepRecorder(
            name=step, signer=load_signer(str(key)), use_dsse=dsse,
            recorder=ArtifactRecorder(base_path=str(cwd), follow_symlink_dirs=True),
            metadata_directory=str(cwd),
        )
        with contextlib.chdir(cwd):  # the command itself runs in the workspace
            recorder.run(materials, products, command)

    def sign_layout(self, layout, keys, out, dsse):
        from custody.intoto.metadata import Envelope, Metablock

        model = Layout.from_dict(layout)
        metadata = Envelope.new(model) if dsse else Metablock.new(model)
        for key in keys:
            metadata.sign(load_signer(str(key)))
        metadata.dump(out)

    def verify(self, layout, keys, link_dir, workdir):
        from custody.intoto.verify import DirectoryLinks, Verifier

        Verifier(workdir=workdir).verify(
            load_metadata(layout), [load_public_key(p) for p in keys], DirectoryLinks(link_dir)
        )


IMPLS: dict[str, Impl] = {"in-toto": Reference(), "custody": Custody()}


def keyid(keydir: Path, name: str) -> str:
    return load_public_key(keydir / f"{name}.pub").keyid


def hello_layout(keydir: Path, expires: str = "2035-01-01T00:00:00Z",
                 developer: str = "alice") -> dict[str, Any]:
    """The layout of the hello chain (unsigned), as a dict; ``developer`` writes the source."""
    keys = {n: load_public_key(keydir / f"{n}.pub") for n in (developer, "bob", "rb1", "rb2")}
    keys["alice"] = keys[developer]
    py = sys.executable
    return Layout(
        keys={k.keyid: key_to_dict(k) for k in keys.values()},
        expires=expires,
        readme="hello: write, rebuild twice, package",
        steps=[
            Step("clone", [keys["alice"].keyid], 1, [],
                 [["CREATE", "src/*"], ["DISALLOW", "*"]], [py, "-c", WRITE_SCRIPT]),
            Step("build", [keys["rb1"].keyid, keys["rb2"].keyid], 2,
                 [["MATCH", "src/*", "WITH", "PRODUCTS", "FROM", "clone"], ["DISALLOW", "*"]],
                 [["CREATE", "dist/hello.tar.gz"], ["DISALLOW", "*"]], [py, "-c", BUILD_SCRIPT]),
            Step("package", [keys["bob"].keyid], 1,
                 [["MATCH", "dist/hello.tar.gz", "WITH", "PRODUCTS", "FROM", "build"],
                  ["DISALLOW", "*"]],
                 [["MATCH", "hello.tar.gz", "WITH", "PRODUCTS", "IN", "dist", "FROM", "build"],
                  ["DISALLOW", "*"]], ["cp", "dist/hello.tar.gz", "hello.tar.gz"]),
        ],
        inspect=[
            Inspection(
                "untar", ["tar", "xzf", "hello.tar.gz"],
                [["MATCH", "hello.tar.gz", "WITH", "PRODUCTS", "FROM", "package"],
                 ["ALLOW", "root.layout"], ["DISALLOW", "*"]],
                [["MATCH", "src/*", "WITH", "PRODUCTS", "FROM", "clone"],
                 ["ALLOW", "hello.tar.gz"], ["ALLOW", "root.layout"], ["DISALLOW", "*"]],
            )
        ],
    ).to_dict()


@dataclass
class Chain:
    """Paths of a recorded chain: where the links are and where verification runs."""

    root: Path
    links: Path
    verify_dir: Path
    layout: Path
    owner_keys: list[Path]


def record_hello(impl: Impl, keydir: Path, root: Path, dsse: bool = False,
                 trojan_rb2: bool = False, tamper_between: bool = False,
                 message: str | None = None, developer: str = "alice",
                 inject_after_tag: bool = False, extra_artifact: bool = False,
                 payload_mib: int = 0, payload_seed: int | None = None) -> Path:
    """Perform the three steps in ``root``; return the directory holding the links.

    ``message`` changes what the source prints, so versions differ in content.
    """
    py = sys.executable
    dev = root / "dev"
    dev.mkdir(parents=True)
    write = [py, "-c", WRITE_SCRIPT, *([message] if message else [])]
    if payload_mib:
        write = [py, "-c", WRITE_SCRIPT, message or "hello", str(payload_mib)]
    if payload_mib and payload_seed is not None:
        write = [py, "-c", SEEDED_WRITE_SCRIPT, message or "hello", str(payload_mib),
                 str(payload_seed)]
    impl.run("clone", keydir / developer, [], ["src"], write, dev, dsse)
    if tamper_between:  # the network between clone and build alters the source
        (dev / "src" / "hello.py").write_text('print("pwned")\n')
    if inject_after_tag:  # the version control gains a file after the tag step
        (dev / "src" / "inject.py").write_text('import os\n')
    outputs = {}
    for rb in ("rb1", "rb2"):
        ws = root / rb
        shutil.copytree(dev / "src", ws / "src")
        script = BUILD_SCRIPT + ("open('dist/extra.sh', 'w').write('curl evil')\n"
                                 if extra_artifact else "")
        args = [py, "-c", script] + (["evil()"] if trojan_rb2 and rb == "rb2" else [])
        impl.run("build", keydir / rb, ["src"], ["dist"], args, ws, dsse)
        outputs[rb] = ws
    pkg = root / "pkg"
    shutil.copytree(outputs["rb1"] / "dist", pkg / "dist")
    impl.run("package", keydir / "bob", ["dist"], ["hello.tar.gz"],
             ["cp", "dist/hello.tar.gz", "hello.tar.gz"], pkg, dsse)
    links = root / "links"
    links.mkdir()
    for ws in (dev, *outputs.values(), pkg):
        for link in ws.glob("*.link"):
            shutil.copy(link, links / link.name)
    return links


def make_chain(recorder: Impl, signer: Impl, keydir: Path, root: Path, dsse: bool = False,
               layout: dict[str, Any] | None = None, **options: Any) -> Chain:
    links = record_hello(recorder, keydir, root, dsse, **options)
    verify_dir = root / "verify"
    verify_dir.mkdir()
    shutil.copy(root / "pkg" / "hello.tar.gz", verify_dir / "hello.tar.gz")
    layout_path = verify_dir / "root.layout"
    signer.sign_layout(layout or hello_layout(keydir), [keydir / "owner"], layout_path, dsse)
    return Chain(root, links, verify_dir, layout_path, [keydir / "owner.pub"])


def verify_chain(impl: Impl, chain: Chain, keys: list[Path] | None = None) -> None:
    impl.verify(chain.layout, keys or chain.owner_keys, chain.links, chain.verify_dir)
