"""Web fetching against a real HTTP server on 127.0.0.1 (and nothing else).

Every connection the fetcher opens goes through a spy that fails the test for any address
outside 127.0.0.0/8; names other than localhost resolve through a fake DNS table.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from pixelbatch.imaging import fetch as fetch_mod
from pixelbatch.imaging.failures import ItemFailure
from pixelbatch.imaging.fetch import FetchPolicy, fetch_input

pytestmark = pytest.mark.enable_socket

PAYLOAD = bytes(range(256)) * 40  # 10 KiB
MAX_HANDLER_SECONDS = 5.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.hits: list[tuple[str, str]] = []
        self.stopping = threading.Event()
        self.sni: list[str | None] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        # clients hanging up mid-body is the point of several routes; anything else is a bug
        if not isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.hits.append((self.path, self.headers.get("Host", "")))
        name, _, arg = self.path.lstrip("/").partition("/")
        route = getattr(self, f"route_{name.replace('-', '_')}", None)
        try:
            if route is None:
                self.reply(404, b"no such route")
            else:
                route(arg)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # the client hung up, as it should for the hostile routes

    def reply(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", headers.pop("length", str(len(body))))
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def trickle(self, data: bytes, pause: float) -> None:
        deadline = time.monotonic() + MAX_HANDLER_SECONDS
        for i in range(len(data)):
            if self.server.stopping.is_set() or time.monotonic() > deadline:
                return
            self.wfile.write(data[i : i + 1])
            self.wfile.flush()
            time.sleep(pause)

    def route_ok(self, _: str) -> None:
        self.reply(200, PAYLOAD, Content_Type="image/png")

    def route_host(self, _: str) -> None:
        self.reply(200, self.headers.get("Host", "").encode())

    def route_status(self, arg: str) -> None:
        self.reply(int(arg), b"status page")

    def route_redirect(self, arg: str) -> None:
        hops = int(arg)
        self.reply(302, Location=f"/redirect/{hops - 1}" if hops > 0 else "/ok")

    def route_relative(self, _: str) -> None:
        self.reply(301, Location="ok")

    def route_to(self, arg: str) -> None:
        targets = {
            "foreign": "http://evil.example.org/x.jpg",
            "file": "file:///etc/passwd",
            "internal": f"http://internal.example.test:{self.server.server_address[1]}/ok",
        }
        self.reply(302, Location=targets[arg])

    def route_drip(self, _: str) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.trickle(b"x" * 100_000, 0.05)

    def route_slow_headers(self, _: str) -> None:
        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
        self.trickle(b"X-Padding: " + b"a" * 10_000, 0.05)

    def route_silent(self, _: str) -> None:
        self.server.stopping.wait(MAX_HANDLER_SECONDS)

    def route_endless(self, _: str) -> None:
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        self._stream_forever(lambda chunk: chunk)

    def route_endless_chunked(self, _: str) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._stream_forever(lambda chunk: b"%x\r\n%s\r\n" % (len(chunk), chunk))

    def _stream_forever(self, frame: Callable[[bytes], bytes]) -> None:
        deadline = time.monotonic() + MAX_HANDLER_SECONDS
        chunk = b"z" * 65536
        while not self.server.stopping.is_set() and time.monotonic() < deadline:
            self.wfile.write(frame(chunk))

    def route_huge_declared(self, _: str) -> None:
        self.reply(200, b"", length=str(10**12))

    def route_short_declared(self, _: str) -> None:
        self.reply(200, b"s" * 2_000_000, length="100")

    def route_long_declared(self, _: str) -> None:
        self.reply(200, b"only ten b", length="5000", Connection="close")


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0))
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.stopping.set()
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def base(server: _Server) -> str:
    server.hits.clear()
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail the test if the fetcher ever connects anywhere but 127.0.0.0/8."""
    connected: list[str] = []
    real = fetch_mod.create_connection

    def spy(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        if not address[0].startswith("127."):
            raise AssertionError(f"connection attempt to {address[0]}")
        connected.append(address[0])
        return real(address, *args, **kwargs)

    monkeypatch.setattr(fetch_mod, "create_connection", spy)
    return connected


def fake_dns(monkeypatch: pytest.MonkeyPatch, table: dict[str, list[str]]) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in table:
            return [
                (
                    socket.AF_INET6 if ":" in a else socket.AF_INET,
                    socket.SOCK_STREAM,
                    6,
                    "",
                    (a, int(port), 0, 0) if ":" in a else (a, int(port)),
                )
                for a in table[host]
            ]
        if host in ("localhost", "127.0.0.1", "::1"):
            return real(host, port, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, f"unexpected lookup of {host}")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def loopback_policy(**overrides: Any) -> FetchPolicy:
    settings: dict[str, Any] = {
        "allowed_hosts": ("127.0.0.1",),
        "allow_http": True,
        "allow_private_addresses": True,
        "connect_timeout": 1.0,
        "read_timeout": 1.0,
        "total_timeout": 1.5,
        "max_bytes": 1 << 20,
    }
    return FetchPolicy(**{**settings, **overrides})


def get(url: str, policy: FetchPolicy | None = None) -> bytes:
    return fetch_input(
        url,
        owner_id="owner-1",
        uploads_bucket="uploads-bucket",
        s3_client=None,  # type: ignore[arg-type]
        policy=policy or loopback_policy(),
    )


def failure(url: str, policy: FetchPolicy | None = None) -> ItemFailure:
    with pytest.raises(ItemFailure) as info:
        get(url, policy)
    return info.value


# ---- status codes and redirects ------------------------------------------------------------


def test_ok_download_returns_the_exact_bytes(base: str, loopback_only: list[str]) -> None:
    assert get(f"{base}/ok") == PAYLOAD
    assert loopback_only == ["127.0.0.1"]


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (404, "not_found", False),
        (410, "not_found", False),
        (403, "fetch_failed", False),
        (418, "fetch_failed", False),
        (429, "fetch_failed", True),
        (500, "fetch_failed", True),
        (503, "fetch_failed", True),
    ],
)
def test_error_statuses(base: str, status: int, code: str, retryable: bool) -> None:
    err = failure(f"{base}/status/{status}")
    assert (err.code, err.retryable) == (code, retryable)


def test_redirects_within_the_limit_are_followed(base: str, server: _Server) -> None:
    assert get(f"{base}/redirect/2") == PAYLOAD  # three redirects in all
    assert [path for path, _ in server.hits] == ["/redirect/2", "/redirect/1", "/redirect/0", "/ok"]
    assert get(f"{base}/relative") == PAYLOAD


def test_redirect_chain_over_the_limit_fails(base: str, server: _Server) -> None:
    err = failure(f"{base}/redirect/5", loopback_policy(max_redirects=3))
    assert (err.code, err.retryable) == ("fetch_failed", False)
    assert len(server.hits) == 4  # the first request and three redirects, no more


@pytest.mark.parametrize("target", ["foreign", "file"])
def test_redirect_to_a_blocked_destination(base: str, target: str) -> None:
    err = failure(f"{base}/to/{target}")
    assert (err.code, err.message) == ("blocked_destination", "不允许访问该地址")


# ---- size and time limits ------------------------------------------------------------------


def test_slow_drip_body_ends_in_timeout(base: str) -> None:
    start = time.monotonic()
    err = failure(f"{base}/drip", loopback_policy(total_timeout=0.6))
    assert (err.code, err.message, err.retryable) == ("timeout", "下载图片超时", True)
    assert 0.6 <= time.monotonic() - start < 1.5


def test_slow_headers_end_in_timeout(base: str) -> None:
    start = time.monotonic()
    assert failure(f"{base}/slow-headers", loopback_policy(total_timeout=0.6)).code == "timeout"
    assert 0.6 <= time.monotonic() - start < 1.5


def test_silent_server_hits_the_read_timeout(base: str) -> None:
    start = time.monotonic()
    err = failure(f"{base}/silent", loopback_policy(read_timeout=0.3, total_timeout=5.0))
    assert (err.code, err.retryable) == ("timeout", True)
    assert time.monotonic() - start < 1.5


@pytest.mark.parametrize("route", ["endless", "endless-chunked"])
def test_endless_body_is_too_large(base: str, route: str) -> None:
    start = time.monotonic()
    err = failure(f"{base}/{route}", loopback_policy(total_timeout=5.0))
    assert (err.code, err.message) == ("too_large", "图片文件过大")
    assert time.monotonic() - start < 1.5


def test_declared_length_over_the_cap_is_refused_without_reading(base: str) -> None:
    start = time.monotonic()
    assert failure(f"{base}/huge-declared").code == "too_large"
    assert time.monotonic() - start < 0.5


def test_body_longer_than_declared_is_cut_at_the_declared_length(base: str) -> None:
    assert get(f"{base}/short-declared") == b"s" * 100


def test_body_shorter_than_declared_is_a_retryable_failure(base: str) -> None:
    err = failure(f"{base}/long-declared")
    assert (err.code, err.retryable) == ("fetch_failed", True)


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = failure(f"http://127.0.0.1:{port}/ok")
    assert (err.code, err.retryable) == ("fetch_failed", True)


# ---- address checks at connect time --------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://127.0.0.1:9/x", "127.0.0.1"),
        ("http://localhost:9/x", "localhost"),
        ("http://10.1.2.3/x", "10.1.2.3"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://[::1]:9/x", "::1"),
        ("http://[::ffff:127.0.0.1]:9/x", "::ffff:127.0.0.1"),
        ("http://[fd00:ec2::254]/latest/", "fd00:ec2::254"),
        ("http://0.0.0.0:9/x", "0.0.0.0"),
        ("http://2130706433:9/x", "2130706433"),  # 127.0.0.1 as one decimal number
    ],
)
def test_private_destinations_are_blocked_before_any_connection(
    url: str, host: str, socket_disabled: None
) -> None:
    # socket_disabled: creating any socket at all would raise instead of connecting
    policy = loopback_policy(allowed_hosts=(host,), allow_private_addresses=False)
    err = failure(url, policy)
    assert (err.code, err.retryable) == ("blocked_destination", False)


@pytest.mark.parametrize(
    "addresses",
    [["169.254.169.254"], ["10.0.0.8"], ["93.184.216.34", "10.0.0.8"], ["fd00:ec2::254"]],
)
def test_names_resolving_to_private_addresses_are_blocked(
    monkeypatch: pytest.MonkeyPatch, socket_disabled: None, addresses: list[str]
) -> None:
    fake_dns(monkeypatch, {"img.example.test": addresses})
    policy = loopback_policy(allowed_hosts=("*.example.test",), allow_private_addresses=False)
    err = failure("http://img.example.test/a.jpg", policy)
    assert err.code == "blocked_destination"
    assert "resolves to" in err.detail  # caught at connect time, after resolution


def _loopback_counts_as_public(monkeypatch: pytest.MonkeyPatch) -> None:
    real = fetch_mod.is_public_address
    monkeypatch.setattr(
        fetch_mod, "is_public_address", lambda ip: str(ip) == "127.0.0.1" or real(ip)
    )


def test_checked_connection_keeps_the_host_header(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    _loopback_counts_as_public(monkeypatch)
    fake_dns(monkeypatch, {"good.example.test": ["127.0.0.1"]})
    port = server.server_address[1]
    policy = loopback_policy(allowed_hosts=("*.example.test",), allow_private_addresses=False)
    assert (
        get(f"http://good.example.test:{port}/host", policy) == f"good.example.test:{port}".encode()
    )


def test_redirect_to_a_name_that_resolves_privately_is_blocked(
    server: _Server, monkeypatch: pytest.MonkeyPatch, loopback_only: list[str]
) -> None:
    _loopback_counts_as_public(monkeypatch)
    fake_dns(
        monkeypatch, {"good.example.test": ["127.0.0.1"], "internal.example.test": ["10.0.0.7"]}
    )
    port = server.server_address[1]
    policy = loopback_policy(allowed_hosts=("*.example.test",), allow_private_addresses=False)
    err = failure(f"http://good.example.test:{port}/to/internal", policy)
    assert err.code == "blocked_destination"
    assert loopback_only == ["127.0.0.1"]


# ---- TLS --------------------------------------------------------------------------------------


def _self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    cert_file, key_file = _self_signed(tmp_path, "images.example.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    srv = _Server(("127.0.0.1", 0))

    def record_sni(
        sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: ssl.SSLContext
    ) -> None:
        srv.sni.append(name)

    context.sni_callback = record_sni
    srv.socket = context.wrap_socket(srv.socket, server_side=True)
    real_session = fetch_mod._session

    def trusting_session() -> requests.Session:
        session = real_session()
        session.verify = str(cert_file)  # trust the test certificate instead of the system CAs
        return session

    monkeypatch.setattr(fetch_mod, "_session", trusting_session)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.stopping.set()
    srv.shutdown()
    srv.server_close()


def test_tls_uses_the_url_host_for_sni_and_certificate_check(
    tls_server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(
        monkeypatch,
        {"images.example.test": ["127.0.0.1"], "other.example.test": ["127.0.0.1"]},
    )
    port = tls_server.server_address[1]
    policy = loopback_policy(allowed_hosts=("*.example.test",), allow_http=False)
    assert get(f"https://images.example.test:{port}/ok", policy) == PAYLOAD
    assert tls_server.sni == ["images.example.test"]
    # same address, but the certificate does not name this host
    err = failure(f"https://other.example.test:{port}/ok", policy)
    assert (err.code, err.retryable) == ("fetch_failed", False)


def test_tls_slow_drip_is_cut_at_the_deadline(
    tls_server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"images.example.test": ["127.0.0.1"]})
    port = tls_server.server_address[1]
    policy = loopback_policy(allowed_hosts=("*.example.test",), allow_http=False, total_timeout=0.5)
    start = time.monotonic()
    assert failure(f"https://images.example.test:{port}/drip", policy).code == "timeout"
    assert time.monotonic() - start < 1.5
