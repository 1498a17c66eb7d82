"""URL checks without network, address classification, and S3 fetching against moto."""

from __future__ import annotations

import io
import ipaddress
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pixelbatch.imaging.failures import ItemFailure
from pixelbatch.imaging.fetch import (
    FetchPolicy,
    check_input_url_syntax,
    fetch_input,
    is_public_address,
    parse_s3_url,
)

BUCKET = "pixelbatch-uploads-test"
OWNER = "3f0c7a52-9d1e-4d8b-a0c1-1b2c3d4e5f60"
OTHER = "9a8b7c6d-0000-4000-8000-000000000001"
HOSTS = ("cdn.example.com", "*.images.example.net")


def check(url: str, **kw: Any) -> None:
    check_input_url_syntax(
        url, owner_id=kw.pop("owner_id", OWNER), uploads_bucket=BUCKET, allowed_hosts=HOSTS, **kw
    )


def code_of(url: str, **kw: Any) -> str:
    with pytest.raises(ItemFailure) as info:
        check(url, **kw)
    return info.value.code


# ---- syntax -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"s3://{BUCKET}/uploads/{OWNER}/photo.jpg",
        f"s3://{BUCKET}/uploads/{OWNER}/batch 1/IMG_0001.JPG".replace(" ", "_"),
        "https://cdn.example.com/a/b.jpg?size=large",
        "HTTPS://CDN.EXAMPLE.COM/a.jpg",
        "https://cdn.example.com./a.jpg",
        "https://a.images.example.net/x.png",
        "https://a.b.images.example.net:8443/x.png",
    ],
)
def test_good_urls_pass(url: str) -> None:
    check(url)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "file:///etc/passwd",
        "ftp://cdn.example.com/a.jpg",
        "gopher://cdn.example.com:70/_x",
        "data:image/png;base64,iVBORw0KGgo=",
        "cdn.example.com/a.jpg",
        "//cdn.example.com/a.jpg",
        "javascript:alert(1)",
        "http://cdn.example.com/a.jpg",  # plain http is not allowed in production
        "https://cdn.example.com@evil.example.org/a.jpg",
        "https://user:pw@cdn.example.com/a.jpg",
        "https://cdn.example.com\\@evil.example.org/",
        "https://cdn.example.com/a b.jpg",
        "https://cdn.example.com/a.jpg\r\nX-Injected: 1",
        "https:///a.jpg",
        "s3://",
        f"s3://{BUCKET}",
        f"s3:///uploads/{OWNER}/a.jpg",
        "https://cdn.example.com/" + "a" * 3000,
    ],
)
def test_malformed_or_foreign_scheme_urls_are_invalid(url: str) -> None:
    assert code_of(url) == "invalid_input_url"


def test_invalid_url_failure_has_the_user_message() -> None:
    with pytest.raises(ItemFailure) as info:
        check("file:///etc/passwd")
    assert (info.value.message, info.value.retryable) == ("图片地址无效", False)


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.org/a.jpg",
        "https://images.example.net/x.png",  # the wildcard covers subdomains only
        "https://evilimages.example.net/x.png",
        "https://cdn.example.com.evil.org/a.jpg",
        "https://127.0.0.1/a.jpg",
        "https://[::1]/a.jpg",
        f"s3://other-bucket/uploads/{OWNER}/a.jpg",
        f"s3://{BUCKET}/uploads/{OTHER}/a.jpg",
        f"s3://{BUCKET}/uploads/{OWNER}",
        f"s3://{BUCKET}/uploads/{OWNER}/",
        f"s3://{BUCKET}/uploads/{OWNER}/../{OTHER}/a.jpg",
        f"s3://{BUCKET}/uploads/{OWNER}/./a.jpg",
        f"s3://{BUCKET}/uploads/{OWNER}//a.jpg",
        f"s3://{BUCKET}/uploads/{OWNER}x/a.jpg",  # a longer owner id sharing the prefix
        f"s3://{BUCKET}/results/{OWNER}/a.jpg",
        f"s3://{BUCKET}/{OWNER}/uploads/a.jpg",
    ],
)
def test_urls_outside_what_the_owner_may_read_are_blocked(url: str) -> None:
    assert code_of(url) == "blocked_destination"


def test_private_ip_literals_are_blocked_even_when_listed() -> None:
    with pytest.raises(ItemFailure) as info:
        check_input_url_syntax(
            "https://169.254.169.254/latest/meta-data/",
            owner_id=OWNER,
            uploads_bucket=BUCKET,
            allowed_hosts=["169.254.169.254"],
        )
    assert info.value.code == "blocked_destination"
    assert info.value.message == "不允许访问该地址"


@pytest.mark.parametrize("owner", ["", "..", "a/b", "x" * 200])
def test_unusable_owner_ids_read_nothing(owner: str) -> None:
    assert code_of(f"s3://{BUCKET}/uploads/{owner}/a.jpg", owner_id=owner) in {
        "blocked_destination",
        "invalid_input_url",
    }


def test_http_is_allowed_only_when_asked() -> None:
    check("http://cdn.example.com/a.jpg", allow_http=True)


def test_parse_s3_url_keeps_the_key_literally() -> None:
    assert parse_s3_url("s3://bkt/uploads/u/a%2F..#x.jpg") == ("bkt", "uploads/u/a%2F..#x.jpg")
    with pytest.raises(ItemFailure):
        parse_s3_url("s3://UPPER_case/key")


# ---- addresses ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "198.18.0.1",
        "::1",
        "::",
        "fe80::1",
        "fd00:ec2::254",
        "fc00::5",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:10.0.0.1",
        "64:ff9b::a9fe:a9fe",  # NAT64 form of 169.254.169.254
        "2002:7f00:1::",  # 6to4 wrapping 127.0.0.1
        "2002:a00:1::",  # 6to4 wrapping 10.0.0.1
        "::127.0.0.1",
    ],
)
def test_non_public_addresses(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "1.1.1.1"])
def test_public_addresses(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


# ---- S3 -----------------------------------------------------------------------------------


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def fetch(url: str, client: Any, **policy: Any) -> bytes:
    return fetch_input(
        url, owner_id=OWNER, uploads_bucket=BUCKET, s3_client=client, policy=FetchPolicy(**policy)
    )


def test_s3_fetch_reads_the_owners_object(s3: Any) -> None:
    body = bytes(range(256)) * 1000
    s3.put_object(Bucket=BUCKET, Key=f"uploads/{OWNER}/b1/a.jpg", Body=body)
    assert fetch(f"s3://{BUCKET}/uploads/{OWNER}/b1/a.jpg", s3) == body


def test_s3_missing_key_is_not_found(s3: Any) -> None:
    with pytest.raises(ItemFailure) as info:
        fetch(f"s3://{BUCKET}/uploads/{OWNER}/nope.jpg", s3)
    assert (info.value.code, info.value.message) == ("not_found", "图片不存在")


def test_s3_other_users_object_is_blocked_without_reading(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key=f"uploads/{OTHER}/a.jpg", Body=b"secret")
    for url in (
        f"s3://{BUCKET}/uploads/{OTHER}/a.jpg",
        f"s3://{BUCKET}/uploads/{OWNER}/../{OTHER}/a.jpg",
    ):
        with pytest.raises(ItemFailure) as info:
            fetch(url, _ExplodingClient())
        assert info.value.code == "blocked_destination"


def test_s3_object_over_the_cap_is_too_large(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key=f"uploads/{OWNER}/big.jpg", Body=b"x" * 5000)
    with pytest.raises(ItemFailure) as info:
        fetch(f"s3://{BUCKET}/uploads/{OWNER}/big.jpg", s3, max_bytes=4999)
    assert (info.value.code, info.value.message) == ("too_large", "图片文件过大")
    assert len(fetch(f"s3://{BUCKET}/uploads/{OWNER}/big.jpg", s3, max_bytes=5000)) == 5000


def test_s3_body_longer_than_its_content_length_is_still_capped() -> None:
    client = _LyingClient(declared=10, body=b"y" * 300_000)
    with pytest.raises(ItemFailure) as info:
        fetch(f"s3://{BUCKET}/uploads/{OWNER}/a.jpg", client, max_bytes=100_000)
    assert info.value.code == "too_large"
    assert client.body.served <= 100_000 + 64 * 1024  # stopped within one chunk of the cap
    assert client.body.closed


class _ExplodingClient:
    def get_object(self, **_: Any) -> Any:
        raise AssertionError("S3 must not be called for a blocked key")


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.served = 0
        self.closed = False

    def read(self, amt: int) -> bytes:
        chunk = self._data.read(amt)
        self.served += len(chunk)
        return chunk

    def close(self) -> None:
        self.closed = True


class _LyingClient:
    def __init__(self, *, declared: int, body: bytes) -> None:
        self.declared = declared
        self.body = _Body(body)

    def get_object(self, **_: Any) -> dict[str, Any]:
        return {"ContentLength": self.declared, "Body": self.body}
