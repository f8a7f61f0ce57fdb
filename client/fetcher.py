"""Fetching from mirrors, for tuf.ngclient: timeouts, length limits, slow-retrieval guard.

`MirrorFetcher` implements python-tuf's `FetcherInterface`. ngclient asks for
URLs under a virtual base (``mirror:/metadata/...``); the fetcher tries each
configured mirror in turn, so a dead or erroring mirror only costs a timeout.
A ``file://`` mirror (a directory written by ``custody-repo export``, on a USB
stick for an air-gapped host) is read directly, with the same checks: the
bytes go through ngclient's length and hash verification like any others.
A mirror that answers with bytes that do not verify is caught one level up:
`custody.client.updater` retries the whole TUF operation with the next mirror first.

How requests leave the host (proxies, ``NO_PROXY``, a private CA bundle, a
client certificate for mutual TLS) is `custody.client.network`'s: curl's rules, from
the environment or the client's configuration.

Length limits are ngclient's (it stops reading past the expected length);
here every request also has a socket timeout, and a download that trickles
slower than ``min_rate`` bytes per second after a grace period is abandoned
(TUF's "slow retrieval" attack).
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

import urllib3
from tuf.api.exceptions import DownloadError, DownloadHTTPError, SlowRetrievalError
from tuf.ngclient.fetcher import FetcherInterface

from custody.client.errors import ConfigError
from custody.client.network import Connections, NetworkOptions

log = logging.getLogger(__name__)
VIRTUAL = "mirror:/"


class MirrorsUnreachable(DownloadError):
    """No mirror answered at all (connection refused, DNS, timeout, 5xx, 404 everywhere).

    An outage, not an attack: nothing was received that failed verification.
    A ``DownloadError`` so that ngclient passes it through unchanged; the
    client reports it as "repository unreachable, try later".
    """


def _local_path(url: str) -> Path | None:
    """The file a ``file://`` URL names; None for one that climbs out with ``..``."""
    parsed = urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        return None
    path = Path(unquote(parsed.path))
    return None if ".." in path.parts else path


def _reason(exc: BaseException) -> str:
    """Why a request failed, in a few words: the kind of failure and, for TLS, OpenSSL's reason.

    urllib3 wraps the cause (``MaxRetryError`` around ``SSLError`` around the
    `ssl` module's error); an operator behind a proxy or a private CA needs to
    read "certificate verify failed" or "ProxyError", not the wrapper's name.
    """
    chain: list[BaseException] = []
    pending: list[object] = [exc]
    while pending and len(chain) < 10:
        cause = pending.pop(0)
        if not isinstance(cause, BaseException) or cause in chain:
            continue
        chain.append(cause)
        pending += [getattr(cause, "reason", None), *cause.args, cause.__cause__]
    for cause in chain:
        if isinstance(cause, ssl.SSLError):
            detail = getattr(cause, "verify_message", None) or cause.reason or str(cause)
            kind = ("certificate verify failed"
                    if isinstance(cause, ssl.SSLCertVerificationError) else "TLS error")
            return f"{kind}: {detail}" if detail != kind else kind
    if any(isinstance(c, urllib3.exceptions.ProxyError) for c in chain):
        return "ProxyError (the proxy could not be reached or refused the connection)"
    wrappers = (urllib3.exceptions.MaxRetryError, urllib3.exceptions.ProtocolError)
    return type(next((c for c in chain if not isinstance(c, wrappers)), exc)).__name__


class MirrorFetcher(FetcherInterface):
    """Fetches ``mirror:/<path>`` from the first of several base URLs that answers."""

    def __init__(self, mirrors: Sequence[str], timeout: float = 30.0, min_rate: float = 1024.0,
                 grace: float = 5.0, chunk_size: int = 1 << 18,
                 progress: Callable[[str, int, int | None, float], None] | None = None,
                 network: NetworkOptions | None = None) -> None:
        if not mirrors:
            raise ValueError("at least one repository URL is needed")
        self.mirrors = [m.rstrip("/") for m in mirrors]
        self.first = 0  # the mirror tried first (rotated after a bad answer)
        self.timeout = timeout
        self.min_rate = min_rate
        self.grace = grace
        self.chunk_size = chunk_size
        self.bytes_downloaded = 0
        self.progress = progress
        # urllib3, which tuf.ngclient already loads: no second HTTP stack to import.
        # A server may close a kept-alive connection between two requests (object
        # stores do, after some answers); one retry of the request, before any byte
        # of the body, is the standard remedy. Bodies are never retried mid-way.
        # ``network`` None: the environment's proxies and SSL_CERT_FILE, as curl reads them.
        self.network = network if network is not None else NetworkOptions.resolve()
        self._pool = Connections(
            self.network,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            retries=urllib3.Retry(total=2, connect=1, read=1, redirect=0, status=0,
                                  other=0, raise_on_status=False))
        if self.network.tls_configured and any(m.startswith("https:") for m in self.mirrors):
            # The configured CA bundle or client certificate is the operator's file: one
            # that OpenSSL cannot load is a usage error now, not an outage at the first
            # fetch (the system's CAs, and SSL_CERT_FILE's, still load when first needed).
            self._pool.prepare_tls()

    def order(self) -> list[str]:
        return self.mirrors[self.first:] + self.mirrors[: self.first]

    def rotate(self) -> None:
        self.first = (self.first + 1) % len(self.mirrors)

    def _fetch(self, url: str) -> Iterator[bytes]:
        if url.startswith(VIRTUAL):
            path = url[len(VIRTUAL):].lstrip("/")
            candidates = [(base, f"{base}/{path}") for base in self.order()]
        else:  # an absolute URL: that server only
            path = url
            candidates = [(url, url)]
        errors: list[str] = []
        not_found = None
        for base, full in candidates:
            if full.startswith("file:"):  # an air-gapped mirror: a directory, a USB stick
                local = _local_path(full)
                if local is None or not local.is_file():
                    not_found = not_found or DownloadHTTPError(f"{path} not found", 404)
                    continue
                return self._file_chunks(local)
            try:
                response = self._pool.request(full, preload_content=False,
                                              decode_content=False)
            except urllib3.exceptions.HTTPError as exc:
                errors.append(f"{base}: {_reason(exc)}")
                continue
            except ConfigError as exc:  # SSL_CERT_FILE's bundle, loaded at the first https URL
                errors.append(f"{base}: {exc}")
                continue
            if response.status == 404:
                not_found = not_found or DownloadHTTPError(f"{path} not found", 404)
                _discard(response)
                continue
            if response.status != 200:
                said = f"{base}: HTTP {response.status} {response.reason or ''}".rstrip()
                if (response.status == 400 and full.startswith("https:")
                        and self.network.client_cert is None):
                    # nginx's answer to a client without the certificate it requires
                    said += " (does the mirror require a client certificate? client_cert)"
                errors.append(said)
                _discard(response)
                continue
            return self._chunks(response, full)
        if not_found is not None:
            raise not_found  # a live mirror's answer; ngclient needs it (end of the root chain)
        raise MirrorsUnreachable(f"no mirror served {path} ({'; '.join(errors)})")

    def _file_chunks(self, local: Path) -> Iterator[bytes]:
        with open(local, "rb") as f:
            while chunk := f.read(self.chunk_size):
                self.bytes_downloaded += len(chunk)
                yield chunk

    def _chunks(self, response: urllib3.BaseHTTPResponse, url: str) -> Iterator[bytes]:
        start = time.monotonic()
        received = 0
        total = int(response.headers.get("Content-Length", 0)) or None
        try:
            # read1 returns what has arrived instead of waiting for a full chunk,
            # so a trickling mirror is measured (and dropped) as it trickles.
            while chunk := response.read1(self.chunk_size):
                received += len(chunk)
                self.bytes_downloaded += len(chunk)
                elapsed = time.monotonic() - start
                if elapsed > self.grace and received / elapsed < self.min_rate:
                    raise SlowRetrievalError(
                        f"{url} trickled {received} bytes in {elapsed:.1f} s, below "
                        f"{self.min_rate:.0f} bytes/s"
                    )
                if self.progress is not None and elapsed > 1.0:
                    self.progress(url, received, total, elapsed)
                yield chunk
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            response.close()  # unread bytes: never hand this connection back
            raise MirrorsUnreachable(f"download of {url} failed: {_reason(exc)}") from exc
        except BaseException:  # slow retrieval, or the consumer stopped (length limit)
            response.close()
            raise
        response.release_conn()


#: The largest error body read to keep its connection alive; a larger one closes it.
DRAINED = 64 * 1024


def _discard(response: urllib3.BaseHTTPResponse) -> None:
    """Done with an answer whose body nobody reads (a 404, a 5xx).

    Handing the connection back with its body unread made the next request
    on it fail with ``ResponseNotReady`` and urllib3 log a retry warning on
    every refresh (ngclient's probe for the next root version is a 404 each
    time). A small body is read, so the kept-alive connection is reused; one
    without a length, or a large one (a hostile mirror's endless error page),
    closes the connection instead of reading it.
    """
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) <= DRAINED:
        try:
            response.drain_conn()
        except (urllib3.exceptions.HTTPError, OSError):
            response.close()
            return
        response.release_conn()
    else:
        response.close()
