"""Platform names of builds: ``<os>-<machine>``, e.g. ``linux-x86_64``, ``darwin-arm64``.

One version of an agent ships as several builds; the package index lists
them by platform (`custody.formats.index.VersionEntry.builds`) and each host
installs the build named after its own platform, never another's. The name
is the operating system (``sys.platform`` without a version suffix:
``freebsd14`` is ``freebsd``, ``win32`` is ``windows``) and the machine
(``platform.machine()``) under one spelling per architecture, so that a
publisher and a host agree whatever the kernel reports: ``AMD64`` and
``amd64`` are ``x86_64``; ``arm64`` is ``aarch64`` on Linux and stays
``arm64`` on macOS, the names each system's own toolchains use (and the
names release pages use: ``darwin-arm64``, ``linux-aarch64``).
"""

from __future__ import annotations

import re

from custody.formats.errors import FormatError

PLATFORM = re.compile(r"[a-z][a-z0-9]{0,15}-[a-z0-9_]{1,16}\Z")

_SYSTEMS = {"win32": "windows", "cygwin": "windows", "msys": "windows"}
_MACHINES = {"amd64": "x86_64", "x64": "x86_64", "i386": "x86", "i686": "x86",
             "aarch64": "aarch64", "arm64": "aarch64", "armv8": "aarch64"}


def check_platform(value: str, where: str = "platform") -> str:
    """``value`` when it is a platform name as `normalize` writes them; `FormatError` else."""
    if not isinstance(value, str) or not PLATFORM.match(value):
        raise FormatError(f"{where} {str(value)[:40]!r} is not a platform name like "
                          "linux-x86_64, linux-aarch64 or darwin-arm64")
    return value


def normalize(system: str, machine: str) -> str:
    """The platform name of ``sys.platform`` ``system`` and ``platform.machine()`` ``machine``."""
    system = system.lower()
    system = _SYSTEMS.get(system, re.sub(r"[0-9.]+\Z", "", system) or system)
    machine = machine.lower().replace("-", "_")
    machine = _MACHINES.get(machine, machine)
    if system == "darwin" and machine == "aarch64":
        machine = "arm64"  # Apple's name, the one macOS builds are published under
    return check_platform(f"{system}-{machine}", "this host's platform")


def host_platform() -> str:
    """This host's platform name (`normalize` of what Python reports)."""
    import platform
    import sys

    return normalize(sys.platform, platform.machine())
