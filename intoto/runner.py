"""Record a step: materials, the command, products; then sign the link.

The same three operations as the in-toto reference (``in_toto_run``,
``in_toto_record_start``/``_stop``) and the same outputs: link files named
``<step>.<keyid[:8]>.link`` with ``byproducts`` ``stdout``/``stderr``/
``return-value``, and an unfinished link ``.<step>.<keyid[:8]>.link-unfinished``
between ``record start`` and ``record stop``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from securesystemslib.signer import Signer

from custody.intoto.artifacts import ArtifactRecorder
from custody.intoto.attestation import Statement
from custody.intoto.errors import FormatError, RecordError
from custody.intoto.metadata import Envelope, Metablock, Metadata, load_metadata
from custody.intoto.models import LINK_FILENAME, Link, link_filename

DEFAULT_TIMEOUT = 10.0
"""Seconds a step's command may run, as ``in-toto-run --run-timeout`` defaults."""

UNFINISHED_FILENAME = ".{step}.{keyid:.8}.link-unfinished"


def _tee(source: IO[bytes], sink: IO[str], chunks: list[bytes]) -> None:
    """Copy a child's stream to ours as it arrives, keeping what passed."""
    raw = getattr(sink, "buffer", None)
    for chunk in iter(lambda: source.read1(65536), b""):  # type: ignore[attr-defined]
        chunks.append(chunk)
        if raw is not None:
            raw.write(chunk)
            raw.flush()
        else:
            sink.write(chunk.decode("utf-8", "replace"))
            sink.flush()


def execute(command: Sequence[str], record_streams: bool = False,
            timeout: float | None = DEFAULT_TIMEOUT, cwd: str | None = None) -> dict[str, Any]:
    """Run ``command``; return the byproducts the reference records.

    With ``record_streams`` the command's output still reaches this process's
    stdout/stderr as it is produced, and is also captured.
    """
    if not command:
        return {}
    try:
        if not record_streams:
            proc = subprocess.run(list(command), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=timeout, check=False,
                                  cwd=cwd)
            return {"stdout": "", "stderr": "", "return-value": proc.returncode}
        with subprocess.Popen(list(command), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, cwd=cwd) as popen:
            out: list[bytes] = []
            err: list[bytes] = []
            threads = [
                threading.Thread(target=_tee, args=(popen.stdout, sys.stdout, out), daemon=True),
                threading.Thread(target=_tee, args=(popen.stderr, sys.stderr, err), daemon=True),
            ]
            for t in threads:
                t.start()
            try:
                code = popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()
                raise
            for t in threads:
                t.join()
        return {
            "stdout": b"".join(out).decode("utf-8", "replace"),
            "stderr": b"".join(err).decode("utf-8", "replace"),
            "return-value": code,
        }
    except FileNotFoundError as exc:
        raise RecordError(f"command {command[0]!r} not found") from exc
    except PermissionError as exc:
        raise RecordError(f"command {command[0]!r} is not executable") from exc
    except subprocess.TimeoutExpired as exc:
        raise RecordError(
            f"command {' '.join(command)!r} did not finish within {timeout} seconds"
        ) from exc


@dataclass
class StepRecorder:
    """Everything needed to record one step, as the reference's flags describe it."""

    name: str
    signer: Signer | None = None
    recorder: ArtifactRecorder | None = None
    use_dsse: bool = False
    record_streams: bool = False
    record_environment: bool = False
    timeout: float | None = DEFAULT_TIMEOUT
    metadata_directory: str | None = None
    compact: bool | None = None
    #: Write the finished link as an in-toto attestation (a Statement v1 with
    #: the link predicate v0.3, in DSSE) instead of a classic link.
    attest: bool = False

    def _recorder(self) -> ArtifactRecorder:
        return self.recorder or ArtifactRecorder(follow_symlink_dirs=True)

    def _wrap(self, link: Link) -> Metadata:
        return Envelope.new(link) if self.use_dsse else Metablock.new(link)

    def _path(self, template: str, keyid: str) -> Path:
        name = template.format(step=self.name, keyid=keyid)
        return Path(self.metadata_directory or ".", name)

    def run(self, materials: Sequence[str] = (), products: Sequence[str] = (),
            command: Sequence[str] = ()) -> Metadata:
        """Record materials, run ``command``, record products, sign and write the link.

        Returns the signed metadata; it is written to ``<step>.<keyid8>.link``
        in ``metadata_directory`` when a signer is given.
        """
        recorder = self._recorder()
        link = Link(name=self.name, command=list(command))
        link.materials = recorder.record(materials)
        link.byproducts = execute(command, self.record_streams, self.timeout)
        link.products = recorder.record(products)
        if self.record_environment:
            link.environment = {"workdir": os.getcwd().replace("\\", "/")}
        return self._finish(link)

    def _finish(self, link: Link) -> Metadata:
        if self.attest:
            try:
                metadata: Metadata = Envelope.attest(Statement.from_link(link))
            except FormatError as exc:
                raise RecordError(str(exc)) from exc
        else:
            metadata = self._wrap(link)
        if self.signer is not None:
            signature = metadata.sign(self.signer)
            metadata.dump(self._path(LINK_FILENAME, signature.keyid), self.compact)
        return metadata

    def start(self, materials: Sequence[str] = ()) -> Path:
        """``record start``: sign materials into an unfinished link; return its path."""
        if self.signer is None:
            raise RecordError("record start needs a signing key")
        link = Link(name=self.name, materials=self._recorder().record(materials))
        metadata = self._wrap(link)
        signature = metadata.sign(self.signer)
        path = self._path(UNFINISHED_FILENAME, signature.keyid)
        metadata.dump(path, self.compact)
        return path

    def stop(self, products: Sequence[str] = ()) -> Metadata:
        """``record stop``: add products to the unfinished link, sign, write, clean up."""
        if self.signer is None:
            raise RecordError("record stop needs a signing key")
        key = self.signer.public_key
        path = self._path(UNFINISHED_FILENAME, key.keyid)
        try:
            unfinished = load_metadata(path)
        except FileNotFoundError as exc:
            raise RecordError(f"no unfinished link {path} for step {self.name!r}; "
                              "run 'record start' first with the same key") from exc
        except FormatError as exc:
            raise RecordError(f"unfinished link {path} is malformed: {exc}") from exc
        if not unfinished.is_signed_by(key):
            raise RecordError(f"unfinished link {path} is not signed by key {key.keyid[:8]}")
        link = unfinished.payload
        if not isinstance(link, Link):
            raise RecordError(f"unfinished link {path} does not hold a link")
        link.products = self._recorder().record(products)
        metadata = self._finish(link)
        path.unlink()
        return metadata


__all__ = ["DEFAULT_TIMEOUT", "StepRecorder", "execute", "link_filename"]
