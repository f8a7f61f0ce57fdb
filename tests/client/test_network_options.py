"""Which proxy a request takes and which CAs it trusts: curl's rules (`custody.client.network`).

The environment here is the process's real one (pytest's monkeypatch sets and
restores it); the end-to-end tests with a real proxy and real TLS mirrors are
tests/client/test_enterprise_network.py.
"""

from __future__ import annotations

import pytest

from custody.client.config import ClientConfig
from custody.client.errors import ConfigError
from custody.client.network import Connections, NetworkOptions

VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
             "ALL_PROXY", "no_proxy", "NO_PROXY", "SSL_CERT_FILE", "REQUEST_METHOD")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_no_variables_no_proxy_and_the_system_cas():
    options = NetworkOptions.resolve()
    assert options.proxy_for("https://mirror.example/metadata/root.json") is None
    assert options.ca_bundle is None and options.ssl_context() is None


def test_each_scheme_takes_its_own_proxy_and_all_proxy_is_the_fallback(clean_environment):
    clean_environment.setenv("HTTPS_PROXY", "proxy.corp:3128")  # no scheme: http://, as curl
    clean_environment.setenv("ALL_PROXY", "http://other.corp:8080")
    options = NetworkOptions.resolve()
    assert options.proxy_for("https://mirror.example/x") == "http://proxy.corp:3128"
    assert options.proxy_for("http://mirror.example/x") == "http://other.corp:8080"


def test_lower_case_wins_as_in_curl(clean_environment):
    clean_environment.setenv("HTTPS_PROXY", "http://upper:1")
    clean_environment.setenv("https_proxy", "http://lower:2")
    assert NetworkOptions.resolve().proxy_for("https://m.example/") == "http://lower:2"


def test_http_proxy_in_upper_case_is_ignored_under_cgi(clean_environment):
    """httpoxy: a request's ``Proxy:`` header becomes HTTP_PROXY in a CGI script."""
    clean_environment.setenv("HTTP_PROXY", "http://attacker:1")
    clean_environment.setenv("REQUEST_METHOD", "GET")
    assert NetworkOptions.resolve().proxy_for("http://m.example/") is None


@pytest.mark.parametrize(("no_proxy", "url", "bypassed"), [
    ("mirror.corp", "https://mirror.corp/x", True),
    ("mirror.corp", "https://a.mirror.corp/x", True),  # a name covers its subdomains
    (".corp", "https://mirror.corp/x", True),
    ("corp", "https://mirror.notcorp/x", False),
    ("mirror.corp:8443", "https://mirror.corp:8443/x", True),
    ("mirror.corp:8443", "https://mirror.corp/x", False),
    ("*", "https://anything.example/x", True),
    ("10.0.0.0/8", "https://10.1.2.3/x", True),  # CIDR, as requests and curl 7.86+
    ("10.0.0.0/8", "https://11.1.2.3/x", False),
    ("fd00::/8", "https://[fd00::1]:8443/x", True),
    ("127.0.0.1", "http://127.0.0.1:8000/x", True),
    ("other.corp, 127.0.0.1", "http://127.0.0.1:8000/x", True),
    ("", "https://mirror.corp/x", False),
])
def test_no_proxy(clean_environment, no_proxy, url, bypassed):
    clean_environment.setenv("https_proxy", "http://proxy:3128")
    clean_environment.setenv("http_proxy", "http://proxy:3128")
    clean_environment.setenv("NO_PROXY", no_proxy)
    expected = None if bypassed else "http://proxy:3128"
    assert NetworkOptions.resolve().proxy_for(url) == expected


def test_the_configuration_overrides_the_environment(clean_environment):
    clean_environment.setenv("https_proxy", "http://env:1")
    clean_environment.setenv("http_proxy", "http://env:1")
    clean_environment.setenv("ALL_PROXY", "http://env-all:1")
    clean_environment.setenv("no_proxy", "mirror.corp")
    options = NetworkOptions.resolve(https_proxy="http://conf:2", http_proxy="", no_proxy="")
    assert options.proxy_for("https://mirror.corp/x") == "http://conf:2"  # no_proxy "" wins
    assert options.proxy_for("http://mirror.corp/x") is None  # "" turns it off, ALL_PROXY too


def test_client_config_json_carries_the_options(tmp_path, clean_environment):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("loaded by OpenSSL when a TLS mirror is first fetched\n")
    (tmp_path / "config.json").write_text(
        '{"urls": ["https://m.corp"], "client_id": "x", "https_proxy": "http://p:3",'
        f' "no_proxy": ".internal", "ca_bundle": "{bundle}"}}')
    options = ClientConfig.load(tmp_path).network()
    assert options.proxy_for("https://m.corp/") == "http://p:3"
    assert options.proxy_for("https://m.internal/") is None
    assert options.ca_bundle == str(bundle)


@pytest.mark.parametrize("proxy", ["socks5://proxy:1080", "http://"])
def test_a_proxy_that_is_not_an_http_url_is_a_config_error(clean_environment, proxy):
    clean_environment.setenv("https_proxy", proxy)
    with pytest.raises(ConfigError, match="is not an http:// or https:// proxy URL"):
        NetworkOptions.resolve()


def test_an_unreadable_ssl_cert_file_is_an_error_not_the_system_cas(clean_environment, tmp_path):
    clean_environment.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match=r"^SSL_CERT_FILE names .*missing\.pem, which is not"):
        NetworkOptions.resolve()


def test_files_that_openssl_cannot_load_are_config_errors(tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="holds no CA certificate OpenSSL can load"):
        NetworkOptions.resolve(ca_bundle=str(junk)).ssl_context()
    with pytest.raises(ConfigError, match=r"client certificate .* cannot be loaded"):
        NetworkOptions.resolve(client_cert=str(junk)).ssl_context()
    with pytest.raises(ConfigError, match=r"client_key is set in config\.json without client_cert"):
        NetworkOptions.resolve(client_key=str(junk))


def test_proxy_credentials_become_a_basic_auth_header_not_part_of_the_url(clean_environment):
    clean_environment.setenv("https_proxy", "http://agent%40corp:s3cret@proxy.corp:3128")
    pool = Connections(NetworkOptions.resolve()).pool("https://mirror.example/")
    assert pool.proxy is not None and pool.proxy.host == "proxy.corp"
    assert pool.proxy.auth is None
    # base64("agent@corp:s3cret")
    assert pool.proxy_headers["proxy-authorization"] == "Basic YWdlbnRAY29ycDpzM2NyZXQ="


def test_http_mirrors_never_load_the_ca_bundle(clean_environment, tmp_path):
    """SSL_CERT_FILE is read at the first https:// URL, so a junk one breaks only TLS."""
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    clean_environment.setenv("SSL_CERT_FILE", str(junk))
    connections = Connections(NetworkOptions.resolve())
    assert connections.pool("http://mirror.example/") is connections.pool("http://other/")
    with pytest.raises(ConfigError, match=r"^SSL_CERT_FILE names .*junk\.pem, which holds no"):
        connections.pool("https://mirror.example/")
