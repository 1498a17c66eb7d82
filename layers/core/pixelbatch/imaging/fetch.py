"""Fetch input images from the user's upload prefix in S3 or from allow-listed HTTPS hosts.

Web fetches are the SSRF surface of the product, so every hop is re-checked (scheme, host
allowlist, and the resolved address at connect time, which also defeats DNS rebinding), and
size and time are capped while streaming.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import re
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import requests
from botocore.exceptions import BotoCoreError, ClientError
from botocore.exceptions import ConnectTimeoutError as BotoConnectTimeout
from botocore.exceptions import ReadTimeoutError as BotoReadTimeout
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    LocationParseError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
)
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.util import parse_url
from urllib3.util.connection import create_connection

from .failures import ItemFailure

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_MAX_URL_LENGTH = 2048
_CHUNK = 64 * 1024
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_OWNER_ID = re.compile(r"[A-Za-z0-9_@+=:.-]{1,128}")
_HEADERS = {
    "User-Agent": "PixelBatch-Fetcher/1.0",
    "Accept": "image/*",
    # images are compressed already; transfer compression would only add a decompression bomb
    "Accept-Encoding": "identity",
}
# Not caught by the ipaddress flags on every Python version, or worth naming explicitly.
_BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT, used inside some VPCs
        "169.254.0.0/16",  # link-local, includes the instance metadata service
        "192.0.0.0/24",
        "198.18.0.0/15",
        "fc00::/7",  # unique local, includes the IPv6 metadata service fd00:ec2::254
        "64:ff9b:1::/48",  # local-use NAT64
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int = 25 * 1024 * 1024
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    total_timeout: float = 20.0
    max_redirects: int = 3
    allowed_hosts: tuple[str, ...] = ()  # https hosts; exact, or "*.example.com" for subdomains
    allow_http: bool = False  # only for tests against a loopback server
    allow_private_addresses: bool = False  # only for tests against a loopback server


def _fail(code: str, detail: str = "", *, retryable: bool = False) -> ItemFailure:
    return ItemFailure.of(code, retryable=retryable, detail=detail)


# ---- URL checks (no network) --------------------------------------------------------------


def check_input_url_syntax(
    url: str,
    *,
    owner_id: str,
    uploads_bucket: str,
    allowed_hosts: tuple[str, ...] | list[str],
    allow_http: bool = False,
) -> None:
    """Reject URLs that can never be fetched for this owner, without touching the network."""
    scheme = _scheme(url)
    if scheme == "s3":
        _check_upload_location(url, owner_id=owner_id, uploads_bucket=uploads_bucket)
    elif scheme in ("http", "https"):
        _check_web_url(url, tuple(allowed_hosts), allow_http=allow_http, allow_private=False)
    else:
        raise _fail("invalid_input_url", f"scheme {scheme!r}")


def parse_s3_url(url: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into bucket and key (the key is taken literally)."""
    if _scheme(url) != "s3":
        raise _fail("invalid_input_url", "not an s3 URL")
    bucket, _, key = url[len("s3://") :].partition("/")
    if not _BUCKET.fullmatch(bucket) or not key:
        raise _fail("invalid_input_url", "s3 URL needs a bucket and a key")
    return bucket, key


def _scheme(url: object) -> str:
    if not isinstance(url, str) or not url or len(url) > _MAX_URL_LENGTH:
        raise _fail("invalid_input_url", "missing or overlong URL")
    # whitespace, control characters and backslashes are where URL parsers disagree
    if any(ch <= " " or ch == "\x7f" or ch == "\\" for ch in url):
        raise _fail("invalid_input_url", "URL contains whitespace, control or backslash")
    m = _SCHEME.match(url)
    return m[1].lower() if m else ""


def _check_upload_location(url: str, *, owner_id: str, uploads_bucket: str) -> tuple[str, str]:
    bucket, key = parse_s3_url(url)
    if bucket != uploads_bucket:
        raise _fail("blocked_destination", f"bucket {bucket!r}")
    if not _OWNER_ID.fullmatch(owner_id) or owner_id in (".", ".."):
        raise _fail("blocked_destination", "unusable owner id")
    segments = key.split("/")
    # empty, "." and ".." segments: S3 keeps them literally but other tools normalise them
    if segments[:2] != ["uploads", owner_id] or len(segments) < 3:
        raise _fail("blocked_destination", "outside the owner's upload prefix")
    if any(s in ("", ".", "..") for s in segments):
        raise _fail("blocked_destination", "dot or empty path segment")
    return bucket, key


def _url_host(url: str) -> str:
    """The host a request to ``url`` connects to, refusing URLs with credentials or no host."""
    try:
        # the parser requests itself uses, so the host we check is the host it connects to
        parts = parse_url(url)
    except LocationParseError as e:
        raise _fail("invalid_input_url", str(e)) from e
    if parts.auth is not None:
        raise _fail("invalid_input_url", "credentials in URL")
    host = (parts.host or "").strip("[]").rstrip(".").lower()
    if not host:
        raise _fail("invalid_input_url", "no host")
    return host


def _check_web_url(
    url: str, allowed_hosts: tuple[str, ...], *, allow_http: bool, allow_private: bool
) -> None:
    scheme = _scheme(url)
    if scheme != "https" and not (scheme == "http" and allow_http):
        raise _fail("invalid_input_url", f"scheme {scheme!r}")
    host = _url_host(url)
    if not host_allowed(host, allowed_hosts):
        raise _fail("blocked_destination", f"host {host!r} not allowed")
    ip = _ip_literal(host)
    if ip is not None and not allow_private and not is_public_address(ip):
        raise _fail("blocked_destination", f"address {ip}")


def host_allowed(host: str, allowed_hosts: tuple[str, ...]) -> bool:
    """Exact match, or ``*.example.com`` matching any subdomain (not example.com itself)."""
    for entry in allowed_hosts:
        pattern = entry.strip("[]").rstrip(".").lower()
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_public_address(ip: IPAddress) -> bool:
    """True only for globally routable unicast addresses, looking inside IPv6 wrappings."""
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        candidates += _embedded_ipv4(ip)
    return all(_is_public_plain(c) for c in candidates)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[IPAddress]:
    found: list[IPAddress] = []
    if ip.ipv4_mapped:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour:
        found.append(ip.sixtofour)
    if ip.teredo:
        found.extend(ip.teredo)
    if ip in _NAT64:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def _is_public_plain(ip: IPAddress) -> bool:
    if any(ip.version == net.version and ip in net for net in _BLOCKED_NETWORKS):
        return False
    flags = (
        ip.is_private,
        ip.is_loopback,
        ip.is_link_local,
        ip.is_multicast,
        ip.is_reserved,
        ip.is_unspecified,
        isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local,
    )
    return ip.is_global and not any(flags)


# ---- connect-time address check -----------------------------------------------------------


class _BlockedAddress(Exception):
    """Not an OSError, so urllib3 and requests let it through unwrapped and unretried."""


@dataclass
class _Guard:
    """State of one web fetch, seen by the connections it opens."""

    allow_private: bool
    connections: list[HTTPConnection] = field(default_factory=list)
    expired: bool = False
    # non-public addresses allowed all the same (the local stack's loopback receivers)
    also_allowed: frozenset[str] = frozenset()

    def expire(self) -> None:
        """Called by the watchdog timer: unblock any read stuck on a slow server."""
        self.expired = True
        for conn in list(self.connections):
            sock = getattr(conn, "sock", None)
            if sock is None:
                continue
            # the plain-socket method: SSLSocket.shutdown would race the reading thread
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


_ACTIVE_GUARD: contextvars.ContextVar[_Guard | None] = contextvars.ContextVar(
    "pixelbatch_fetch_guard", default=None
)


def _open_checked_socket(conn: HTTPConnection) -> socket.socket:
    """Resolve, refuse if any address is not public, then connect to the checked address."""
    guard = _ACTIVE_GUARD.get()
    host, port = conn._dns_host, conn.port
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise NameResolutionError(conn.host, conn, e) from e
    addresses = [str(info[4][0]) for info in infos]
    if not (guard and guard.allow_private):
        also = guard.also_allowed if guard else frozenset()
        blocked = [a for a in addresses
                   if a not in also and not is_public_address(ipaddress.ip_address(a))]
        if blocked:
            raise _BlockedAddress(f"{host} resolves to {', '.join(blocked)}")
    error: OSError | None = None
    for address in dict.fromkeys(addresses):
        try:
            # connecting to the literal address: no second DNS lookup that could differ
            sock = create_connection(
                (address, port),
                conn.timeout,
                source_address=conn.source_address,
                socket_options=conn.socket_options,
            )
        except TimeoutError as e:
            raise ConnectTimeoutError(conn, f"connect to {host} timed out") from e
        except OSError as e:
            error = e
            continue
        if guard is not None:
            guard.connections.append(conn)
        return sock
    raise NewConnectionError(conn, f"Failed to establish a new connection: {error}")


class _CheckedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _open_checked_socket(self)


class _CheckedHTTPSConnection(HTTPSConnection):
    # TLS still uses the URL's host name for SNI and certificate checks
    def _new_conn(self) -> socket.socket:
        return _open_checked_socket(self)


class _CheckedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _CheckedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


class _CheckedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _CheckedHTTPConnectionPool,
            "https": _CheckedHTTPSConnectionPool,
        }


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # env proxies would connect for us and skip the address check
    adapter = _CheckedAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


# ---- fetching -----------------------------------------------------------------------------


def fetch_input(
    url: str,
    *,
    owner_id: str,
    uploads_bucket: str,
    s3_client: S3Client,
    policy: FetchPolicy,
) -> bytes:
    """Return the bytes of one input image or raise ItemFailure."""
    scheme = _scheme(url)
    if scheme == "s3":
        bucket, key = _check_upload_location(url, owner_id=owner_id, uploads_bucket=uploads_bucket)
        return _fetch_s3(s3_client, bucket, key, policy.max_bytes)
    if scheme in ("http", "https"):
        return _fetch_web(url, policy)
    raise _fail("invalid_input_url", f"scheme {scheme!r}")


def _fetch_s3(client: S3Client, bucket: str, key: str, max_bytes: int) -> bytes:
    try:
        obj = client.get_object(Bucket=bucket, Key=key)
        body = obj["Body"]
        try:
            if obj.get("ContentLength", 0) > max_bytes:
                raise _fail("too_large", f"{obj['ContentLength']} bytes")
            return _read_capped(iter(lambda: body.read(_CHUNK), b""), max_bytes)
        finally:
            body.close()
    except ClientError as e:
        raise _s3_failure(e) from e
    except (BotoReadTimeout, BotoConnectTimeout) as e:
        raise _fail("timeout", str(e), retryable=True) from e
    except (BotoCoreError, OSError) as e:
        raise _fail("fetch_failed", str(e), retryable=True) from e


def _s3_failure(e: ClientError) -> ItemFailure:
    code = str(e.response.get("Error", {}).get("Code", ""))
    status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    if code in ("NoSuchKey", "NotFound", "404") or status == 404:
        return _fail("not_found", code)
    transient = status >= 500 or code in ("SlowDown", "RequestTimeout", "Throttling")
    return _fail("fetch_failed", f"S3 {code}", retryable=transient)


def _read_capped(
    chunks: Iterable[bytes], max_bytes: int, deadline_passed: Callable[[], bool] | None = None
) -> bytes:
    parts: list[bytes] = []
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise _fail("too_large", f"over {max_bytes} bytes")
        if deadline_passed is not None and deadline_passed():
            raise _fail("timeout", "total time exceeded", retryable=True)
        parts.append(chunk)
    return b"".join(parts)


def _fetch_web(url: str, policy: FetchPolicy) -> bytes:
    guard = _Guard(policy.allow_private_addresses)
    token = _ACTIVE_GUARD.set(guard)
    watchdog = threading.Timer(policy.total_timeout, guard.expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        with _session() as session:
            return _follow_redirects(session, url, policy, guard)
    except _BlockedAddress as e:
        raise _fail("blocked_destination", str(e)) from e
    except (requests.RequestException, Urllib3Error, OSError) as e:
        raise _web_failure(e, guard) from e
    finally:
        watchdog.cancel()
        _ACTIVE_GUARD.reset(token)


def _follow_redirects(
    session: requests.Session, url: str, policy: FetchPolicy, guard: _Guard
) -> bytes:
    for hop in range(policy.max_redirects + 1):
        _check_hop(url, policy, first=hop == 0)
        response = session.get(
            url,
            stream=True,
            allow_redirects=False,
            timeout=(policy.connect_timeout, policy.read_timeout),
            headers=_HEADERS,
        )
        with response:
            target = session.get_redirect_target(response)
            if target:
                url = urljoin(url, target)
                continue
            _raise_for_status(response)
            return _read_body(response, policy, guard)
    raise _fail("fetch_failed", f"more than {policy.max_redirects} redirects")


def _check_hop(url: str, policy: FetchPolicy, *, first: bool) -> None:
    try:
        _check_web_url(
            url,
            policy.allowed_hosts,
            allow_http=policy.allow_http,
            allow_private=policy.allow_private_addresses,
        )
    except ItemFailure as e:
        if first:
            raise
        # a redirect to file:, gopher:, a foreign host ... is the server steering us somewhere
        raise _fail("blocked_destination", f"redirect to {url!r}: {e.detail}") from e


def _raise_for_status(response: requests.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    if status in (404, 410):
        raise _fail("not_found", f"HTTP {status}")
    retryable = status >= 500 or status in (408, 429)
    raise _fail("fetch_failed", f"HTTP {status}", retryable=retryable)


def _read_body(response: requests.Response, policy: FetchPolicy, guard: _Guard) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > policy.max_bytes:
        raise _fail("too_large", f"Content-Length {declared}")
    chunks = response.raw.stream(_CHUNK, decode_content=True)
    data = _read_capped(chunks, policy.max_bytes, lambda: guard.expired)
    if guard.expired:
        # the watchdog cut the connection; what arrived may be a truncated body
        raise _fail("timeout", "total time exceeded", retryable=True)
    return data


def _web_failure(e: Exception, guard: _Guard) -> ItemFailure:
    detail = f"{type(e).__name__}: {e}"
    if guard.expired or isinstance(
        e, requests.Timeout | ReadTimeoutError | ConnectTimeoutError | TimeoutError
    ):
        return _fail("timeout", detail, retryable=True)
    if isinstance(e, requests.exceptions.SSLError):
        return _fail("fetch_failed", detail)  # a bad certificate will not fix itself
    if isinstance(e, requests.exceptions.InvalidURL | requests.exceptions.InvalidSchema):
        return _fail("invalid_input_url", detail)
    return _fail("fetch_failed", detail, retryable=True)


# ---- posting to receivers (webhooks) ------------------------------------------------------

LOOPBACK_RECEIVER_HOST = "127.0.0.1"


@dataclass(frozen=True)
class ReceiverPolicy:
    """Where and how long a POST to a receiver may go: https to public addresses, no
    redirects followed; ``loopback_http`` also allows ``http://127.0.0.1`` (the local stack)."""

    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    total_timeout: float = 15.0
    loopback_http: bool = False


def check_receiver_url(url: str, *, loopback_http: bool = False) -> None:
    """Refuse, without touching the network, a receiver URL that can never be posted to."""
    scheme = _scheme(url)
    host = _url_host(url)
    if _is_loopback_receiver(scheme, host, loopback_http):
        return
    if scheme != "https":
        raise _fail("invalid_input_url", f"scheme {scheme!r}")
    ip = _ip_literal(host)
    if ip is not None and not is_public_address(ip):
        raise _fail("blocked_destination", f"address {ip}")
    if host == "localhost" or host.endswith(".localhost"):
        raise _fail("blocked_destination", f"host {host!r}")


def _is_loopback_receiver(scheme: str, host: str, loopback_http: bool) -> bool:
    return loopback_http and scheme == "http" and host == LOOPBACK_RECEIVER_HOST


def post_to_receiver(
    url: str, body: bytes, headers: dict[str, str], policy: ReceiverPolicy
) -> int:
    """POST ``body`` and answer the receiver's status code, with the address checked at
    connect time; redirects are answers, never followed. Raises ItemFailure when no answer
    came (blocked, refused, timed out)."""
    check_receiver_url(url, loopback_http=policy.loopback_http)
    scheme = _scheme(url)
    host = (parse_url(url).host or "").strip("[]").rstrip(".").lower()
    loopback = _is_loopback_receiver(scheme, host, policy.loopback_http)
    guard = _Guard(False, also_allowed=frozenset({LOOPBACK_RECEIVER_HOST} if loopback else ()))
    token = _ACTIVE_GUARD.set(guard)
    watchdog = threading.Timer(policy.total_timeout, guard.expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        with _session() as session:
            response = session.post(
                url, data=body, headers=headers, allow_redirects=False, stream=True,
                timeout=(policy.connect_timeout, policy.read_timeout),
            )
            with response:
                return int(response.status_code)
    except _BlockedAddress as e:
        raise _fail("blocked_destination", str(e)) from e
    except (requests.RequestException, Urllib3Error, OSError) as e:
        raise _web_failure(e, guard) from e
    finally:
        watchdog.cancel()
        _ACTIVE_GUARD.reset(token)
