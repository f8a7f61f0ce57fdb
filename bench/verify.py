"""Whole-process verification time and peak memory: custody-intoto vs in-toto-verify.

One chain of three steps (checkout -> build -> package) whose links each
record N artifacts, with MATCH rules between the steps and a DISALLOW at the
end of every rule list, at N = 6,000, 20,000 and 60,000, and at N = 10 to show
each tool's fixed cost (interpreter, imports, signature checks). Both tools verify
the very same files in the same run; the table reports the ratio.

    python bench/verify.py [--sizes 6000,20000,60000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BIN, best_of, compile_sources, table, write_result
from custody.intoto.metadata import Metablock, key_to_dict
from custody.intoto.models import Layout, Link, Step
from custody.keys_tooling.keys import generate_key, write_key_pair

FORMATS = {
    "compact": "",
    "indented": " (links as in-toto-run writes them)",
    "dsse": " (DSSE links as in-toto-run --use-dsse writes them)",
}


def write_reference_link(signer: Any, link: Link, path: Path, dsse: bool) -> None:
    """Sign and write ``link`` with the in-toto library itself, in its own format."""
    from in_toto.models.link import Link as RefLink
    from in_toto.models.metadata import Envelope as RefEnvelope
    from in_toto.models.metadata import Metablock as RefMetablock

    ref = RefLink.read(link.to_dict())
    block = RefEnvelope.from_signable(ref) if dsse else RefMetablock(signed=ref)
    block.create_signature(signer)
    block.dump(str(path))


def make_chain(root: Path, n: int, fmt: str = "compact") -> None:
    """Write root.layout, owner.pub and the three signed links for N artifacts.

    ``compact`` links are written by custody-intoto; ``indented`` and ``dsse``
    ones by the in-toto library (what in-toto-run writes, without and with
    ``--use-dsse``), so the reference verifies its own format.
    """
    owner, dev, builder, packager = (generate_key() for _ in range(4))
    write_key_pair(owner, root / "owner", None)

    def digest(i: int, salt: str) -> dict[str, str]:
        return {"sha256": hashlib.sha256(f"{salt}{i}".encode()).hexdigest()}

    sources = {f"src/module{i // 100}/file{i}.py": digest(i, "src") for i in range(n)}
    objects = {f"build/module{i // 100}/file{i}.o": digest(i, "obj") for i in range(n)}
    packaged = {f"pkg/module{i // 100}/file{i}.o": objects[f"build/module{i // 100}/file{i}.o"]
                for i in range(n)}
    links = [
        (dev, Link("checkout", products=sources, command=["git", "checkout", "v1"])),
        (builder, Link("build", materials=sources, products=objects, command=["make"])),
        (packager, Link("package", materials=objects, products=packaged,
                        command=["make", "dist"])),
    ]
    layout = Layout(
        keys={s.public_key.keyid: key_to_dict(s.public_key) for s in (dev, builder, packager)},
        expires="2035-01-01T00:00:00Z",
        steps=[
            Step("checkout", [dev.public_key.keyid], 1, [],
                 [["CREATE", "src/*"], ["DISALLOW", "*"]], ["git", "checkout", "v1"]),
            Step("build", [builder.public_key.keyid], 1,
                 [["MATCH", "src/*", "WITH", "PRODUCTS", "FROM", "checkout"], ["DISALLOW", "*"]],
                 [["CREATE", "build/*"], ["DISALLOW", "*"]], ["make"]),
            Step("package", [packager.public_key.keyid], 1,
                 [["MATCH", "build/*", "WITH", "PRODUCTS", "FROM", "build"], ["DISALLOW", "*"]],
                 [["MATCH", "*", "IN", "pkg", "WITH", "PRODUCTS", "IN", "build", "FROM",
                   "build"], ["DISALLOW", "*"]], ["make", "dist"]),
        ],
    )
    block = Metablock.new(layout)
    block.sign(owner)
    block.dump(root / "root.layout")
    for signer, link in links:
        path = root / f"{link.name}.{signer.public_key.keyid[:8]}.link"
        if fmt == "compact":
            metadata = Metablock.new(link)
            metadata.sign(signer)
            metadata.dump(path)
        else:
            write_reference_link(signer, link, path, dsse=fmt == "dsse")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,6000,20000,60000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    compile_sources()
    rows = []
    sizes = [int(s) for s in args.sizes.split(",")]
    cases = [(n, "compact") for n in sizes] + [(sizes[-1], f) for f in ("indented", "dsse")]
    for n, fmt in cases:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            make_chain(root, n, fmt)
            common = ["--layout", "root.layout", "--link-dir", "."]
            ours, ours_mem = best_of(args.repeat, [BIN / "custody-intoto", "verify", *common,
                                                   "--verification-keys", "owner.pub"], root)
            ref, ref_mem = best_of(args.repeat, [BIN / "in-toto-verify", *common,
                                                 "--verification-keys", "owner.pub"], root)
        label = f"{n:,}" + FORMATS[fmt] + (" (start-up: interpreter, imports, signatures)"
                                           if n <= 100 else "")
        rows.append([label, f"{ref:.2f} s", f"{ours:.2f} s", f"**{ref / ours:.1f}x**",
                     f"{ref_mem / 1024:.0f} MiB", f"{ours_mem / 1024:.0f} MiB",
                     f"{ours / n * 1e6:.1f} us" if n > 100 else "-"])
        print(rows[-1], flush=True)
    write_result("verify", "### `custody-intoto verify` vs `in-toto-verify` "
                 "(3 steps, N artifacts per link, whole process)\n\n" + table(
                     ["artifacts per link", "in-toto-verify", "custody-intoto verify",
                      "speed-up", "in-toto peak RSS", "custody peak RSS",
                      "custody time per artifact"], rows))


if __name__ == "__main__":
    main()
