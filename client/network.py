"""How the client reaches its mirrors on an enterprise network: proxies, CAs, its certificate.

An agent host behind a corporate proxy, or fetching from a mirror that only
a private CA vouches for, or one that demands mutual TLS, must be configured
the way its administrators configure every other HTTP client on it, so the
rules here are curl's and requests', not new ones:

- ``HTTPS_PROXY`` / ``https_proxy`` for ``https://`` mirrors, ``http_proxy``
  (and ``HTTP_PROXY``, except under CGI) for ``http://`` ones, ``ALL_PROXY``
  for either, read by the standard library's `urllib.request.getproxies`
  (lower case wins, as in curl); a proxy without a scheme is ``http://``;
  ``user:password@`` in a proxy URL is sent as Basic proxy authentication;
- ``NO_PROXY`` / ``no_proxy``: comma-separated host names or domain suffixes
  (``.corp.example``), ``host:port``, ``*`` for everything, and, as requests
  and curl 7.86+ do, IP networks in CIDR form (``10.0.0.0/8``), matched
  by `urllib.request.proxy_bypass_environment` and `ipaddress`;
- ``SSL_CERT_FILE``: the CA bundle that replaces the system's trust store
  (OpenSSL's own variable; read here explicitly so that a bundle that cannot
  be read is an error, not a silent fall-back to the system's CAs).

The client's ``config.json`` may set each of these (``http_proxy``,
``https_proxy``, ``no_proxy``, ``ca_bundle``), overriding the environment
for this client only; an empty string turns an environment proxy off. A
client certificate and key (``client_cert``, ``client_key``) exist only in
the configuration: a mirror that requires mutual TLS is a property of the
deployment, not of a shell.

None of this adds or removes trust: TUF verifies every byte whatever route it
took. A proxy or a CA only decides whether the bytes arrive.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import urllib3

from custody.client.errors import ConfigError

#: The URL schemes a proxy may have: an HTTP proxy (CONNECT for ``https://``
#: mirrors), or a TLS connection to the proxy itself.
PROXY_SCHEMES = ("http", "https")


def _with_scheme(proxy: str) -> str:
    """``proxy:3128`` means ``http://proxy:3128``, as curl and requests read it."""
    return proxy if "://" in proxy else f"http://{proxy}"


def _environment_proxies() -> dict[str, str]:
    """The environment's proxies by scheme (plus ``no``), as `urllib.request` reads them.

    `urllib.request` is imported only when some ``*_proxy`` variable exists:
    most hosts have none, and an update poll should not pay for the module.
    """
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return {}
    import urllib.request

    return dict(urllib.request.getproxies())


def _bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    """Whether ``NO_PROXY``'s value says to reach ``host`` directly (curl and requests' rules)."""
    import ipaddress
    import urllib.request

    entries = [e.strip() for e in no_proxy.split(",") if e.strip()]
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    if address is not None:
        for entry in entries:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    netloc = host if port is None else f"{host}:{port}"
    # Undocumented but stable since Python 3.0, and what urllib.request.proxy_bypass
    # calls on every Unix; typeshed does not list it.
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    return bool(bypass(netloc, {"no": no_proxy}))


def _readable(path: str, what: str) -> str:
    if not Path(path).is_file() or not os.access(path, os.R_OK):
        raise ConfigError(f"{what} names {path}, which is not a readable file")
    return path


@dataclass(frozen=True)
class NetworkOptions:
    """Proxies by URL scheme, what bypasses them, the CAs trusted, and a client certificate.

    Made by `resolve`, from the client's configuration over the environment.
    """

    #: Proxy URL by the scheme of the URL fetched (``http``, ``https``), and
    #: ``all`` for any scheme without its own.
    proxies: Mapping[str, str] = field(default_factory=dict)
    #: ``NO_PROXY``'s value (None or empty: every request uses its proxy).
    no_proxy: str | None = None
    #: A PEM bundle of the CAs trusted for TLS, instead of the system's.
    ca_bundle: str | None = None
    #: Where ``ca_bundle`` came from, for messages (``SSL_CERT_FILE`` or the config key).
    ca_bundle_source: str = "ca_bundle"
    #: The client's own certificate (PEM), for mirrors that require mutual TLS,
    #: and its private key (None: the key is in the certificate's file).
    client_cert: str | None = None
    client_key: str | None = None

    @classmethod
    def resolve(cls, http_proxy: str | None = None, https_proxy: str | None = None,
                no_proxy: str | None = None, ca_bundle: str | None = None,
                client_cert: str | None = None, client_key: str | None = None,
                ) -> NetworkOptions:
        """The environment's settings, each overridden by its configured value when not None.

        Raises `ConfigError` (one sentence) for a proxy that is not an
        ``http://`` or ``https://`` URL and for files that cannot be read.
        """
        proxies = _environment_proxies()
        environment_no_proxy = proxies.pop("no", None)
        for scheme, value in (("http", http_proxy), ("https", https_proxy)):
            if value == "":
                proxies[scheme] = ""  # turned off for this client, even if ALL_PROXY is set
            elif value is not None:
                proxies[scheme] = value
        chosen: dict[str, str] = {}
        for scheme, value in proxies.items():
            if scheme not in (*PROXY_SCHEMES, "all"):
                continue  # ftp_proxy and the like: never used for a mirror
            if not value:
                chosen[scheme] = ""
                continue
            url = _with_scheme(value)
            parsed = urlparse(url)
            if parsed.scheme not in PROXY_SCHEMES or not parsed.hostname:
                raise ConfigError(f"the {scheme} proxy {value!r} is not an http:// or "
                                  f"https:// proxy URL (SOCKS proxies are not supported)")
            chosen[scheme] = url
        source = "ca_bundle in config.json"
        if ca_bundle is None and os.environ.get("SSL_CERT_FILE"):
            ca_bundle, source = os.environ["SSL_CERT_FILE"], "SSL_CERT_FILE"
        if client_key is not None and client_cert is None:
            raise ConfigError("client_key is set in config.json without client_cert")
        return cls(
            proxies=chosen,
            no_proxy=environment_no_proxy if no_proxy is None else no_proxy,
            ca_bundle=_readable(ca_bundle, source) if ca_bundle else None,
            ca_bundle_source=source,
            client_cert=_readable(client_cert, "client_cert in config.json")
            if client_cert else None,
            client_key=_readable(client_key, "client_key in config.json")
            if client_key else None,
        )

    @property
    def tls_configured(self) -> bool:
        """Whether the client's configuration names a CA bundle or a client certificate."""
        return self.client_cert is not None or (
            self.ca_bundle is not None and self.ca_bundle_source != "SSL_CERT_FILE")

    def proxy_for(self, url: str) -> str | None:
        """The proxy URL to fetch ``url`` through, or None to connect directly."""
        parsed = urlparse(url)
        proxy = self.proxies.get(parsed.scheme)
        if proxy is None:
            proxy = self.proxies.get("all")
        if not proxy or not parsed.hostname:
            return None
        if self.no_proxy and _bypassed(parsed.hostname, parsed.port, self.no_proxy):
            return None
        return proxy

    def ssl_context(self) -> ssl.SSLContext | None:
        """A TLS context with the configured CAs and client certificate; None for the defaults.

        Built when asked, not with the options: loading a bundle costs
        milliseconds a client of ``http://`` or ``file://`` mirrors never
        needs. Raises `ConfigError` for a bundle, certificate or key that
        OpenSSL cannot load.
        """
        if self.ca_bundle is None and self.client_cert is None:
            return None  # urllib3's own default context: the system's CAs
        from urllib3.util.ssl_ import create_urllib3_context

        context = create_urllib3_context()
        if self.ca_bundle is not None:
            try:
                context.load_verify_locations(cafile=self.ca_bundle)
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(f"{self.ca_bundle_source} names {self.ca_bundle}, which "
                                  f"holds no CA certificate OpenSSL can load ({exc})") from exc
        else:
            context.load_default_certs()
        if self.client_cert is not None:
            try:
                context.load_cert_chain(self.client_cert, self.client_key)
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(f"the client certificate {self.client_cert} (client_cert in "
                                  f"config.json) or its key cannot be loaded: {exc}") from exc
        return context


class Connections:
    """urllib3 pools for one fetcher: direct or through a proxy, with or without TLS.

    `urllib3.ProxyManager` tunnels ``https://`` URLs through the proxy with
    CONNECT (TLS is end to end: the proxy sees only the host name) and sends
    ``http://`` ones to it as absolute-URI requests, exactly as curl does.
    Pools are made on first use and keyed by (proxy, TLS): a client of
    ``http://`` mirrors never loads a CA bundle (tens of milliseconds).
    """

    def __init__(self, options: NetworkOptions, **pool_kwargs: Any) -> None:
        self.options = options
        self._kwargs = pool_kwargs
        self._context: ssl.SSLContext | None = None
        self._context_made = False
        self._pools: dict[tuple[str | None, bool], urllib3.PoolManager] = {}

    def prepare_tls(self) -> None:
        """Load the TLS context now (raising `ConfigError`), not at the first connection."""
        if not self._context_made:
            self._context = self.options.ssl_context()
            self._context_made = True

    def _tls(self) -> dict[str, Any]:
        self.prepare_tls()
        return {} if self._context is None else {"ssl_context": self._context}

    def pool(self, url: str) -> urllib3.PoolManager:
        """The pool that fetches ``url``: through its proxy, or direct."""
        proxy = self.options.proxy_for(url)
        key = (proxy, url.startswith("https:"))
        if key not in self._pools:
            self._pools[key] = self._new_pool(*key)
        return self._pools[key]

    def _new_pool(self, proxy: str | None, tls: bool) -> urllib3.PoolManager:
        target_tls = self._tls() if tls else {}
        if proxy is None:
            return urllib3.PoolManager(**self._kwargs, **target_tls)
        parsed = urlparse(proxy)
        address, headers = proxy, None
        if parsed.username is not None:  # sent as Basic auth, never in the request line
            credentials = f"{unquote(parsed.username)}:{unquote(parsed.password or '')}"
            headers = urllib3.make_headers(proxy_basic_auth=credentials)
            address = parsed._replace(netloc=parsed.netloc.rpartition("@")[2]).geturl()
        proxy_tls = self._tls() if parsed.scheme == "https" else {}
        return urllib3.ProxyManager(address, proxy_headers=headers,
                                    proxy_ssl_context=proxy_tls.get("ssl_context"),
                                    **self._kwargs, **target_tls)

    def request(self, url: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        """``GET url`` through the right pool (`urllib3.PoolManager.request`'s arguments)."""
        return self.pool(url).request("GET", url, **kwargs)
