"""Tests for pixelbatch.zipstream: STORED ZIPs streamed from S3 objects into S3."""

from __future__ import annotations

import hashlib
import io
import json
import math
import random
import shutil
import subprocess
import threading
import time
import tracemalloc
import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws
from PIL import Image
from pixelbatch.zipstream import ZipMember, ZipResult, write_zip_to_s3

MIB = 1024 * 1024
PART = 5 * MIB
SRC = "pixelbatch-src"
OUT = "pixelbatch-out"
EPOCH = (1980, 1, 1, 0, 0, 0)
PHOTOS = Path(__file__).resolve().parents[1] / "fixtures" / "corpus" / "photos"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def s3(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=SRC)
        client.create_bucket(Bucket=OUT)
        yield client


def noise_jpeg(seed: int, width: int = 2048, height: int = 1536) -> bytes:
    """Random-noise JPEG: barely compressible, so a few of them fill several parts."""
    pixels = random.Random(seed).randbytes(width * height * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(out, "JPEG", quality=95)
    return out.getvalue()


def put(client: Any, key: str, data: bytes) -> ZipMember:
    client.put_object(Bucket=SRC, Key=key, Body=data)
    return ZipMember(name=key.rsplit("/", 1)[-1], bucket=SRC, key=key)


def download(client: Any, key: str) -> bytes:
    body: bytes = client.get_object(Bucket=OUT, Key=key)["Body"].read()
    return body


def open_zip(data: bytes) -> zipfile.ZipFile:
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    return archive


def pending_uploads(client: Any) -> list[Any]:
    uploads: list[Any] = client.list_multipart_uploads(Bucket=OUT).get("Uploads", [])
    return uploads


def unzip_test(path: Path) -> None:
    """Second opinion from Info-ZIP's unzip, when the machine has it."""
    if shutil.which("unzip"):
        subprocess.run(["unzip", "-tqq", str(path)], check=True, capture_output=True)


def multipart_count(etag: str) -> int:
    return int(etag.strip('"').rsplit("-", 1)[1])


# --- round trip through moto ------------------------------------------------------


def test_zip_of_jpegs_and_manifest_round_trips_byte_identical(s3: Any, tmp_path: Path) -> None:
    sources: dict[str, bytes] = {p.name: p.read_bytes() for p in sorted(PHOTOS.glob("*.jpg"))}
    sources |= {f"generated_{i}.jpg": noise_jpeg(i, 640, 480) for i in range(2)}
    assert len(sources) >= 5
    members = [put(s3, f"results/job-1/{name}", data) for name, data in sources.items()]
    manifest = json.dumps({n: hashlib.sha256(d).hexdigest() for n, d in sources.items()}).encode()
    members.append(ZipMember(name="manifest.json", data=manifest))

    result = write_zip_to_s3(
        s3,
        bucket=OUT,
        key="exports/job-1.zip",
        members=members,
        content_disposition='attachment; filename="job-1.zip"',
    )

    data = download(s3, "exports/job-1.zip")
    assert result == ZipResult(bucket=OUT, key="exports/job-1.zip", size=len(data), members=6)
    archive = open_zip(data)
    assert archive.namelist() == [*sources, "manifest.json"]
    for info in archive.infolist():
        assert info.compress_type == zipfile.ZIP_STORED
        assert info.date_time == EPOCH
    for name, original in sources.items():
        assert archive.read(name) == original
    assert archive.read("manifest.json") == manifest
    head = s3.head_object(Bucket=OUT, Key="exports/job-1.zip")
    assert head["ContentType"] == "application/zip"
    assert head["ContentDisposition"] == 'attachment; filename="job-1.zip"'
    (tmp_path / "job-1.zip").write_bytes(data)
    unzip_test(tmp_path / "job-1.zip")


def test_large_archive_is_uploaded_in_several_exact_parts(s3: Any) -> None:
    jpegs = {f"result_{i}.jpg": noise_jpeg(100 + i) for i in range(4)}
    total = sum(map(len, jpegs.values()))
    assert total > 12 * MIB
    members = [put(s3, f"results/{name}", data) for name, data in jpegs.items()]

    result = write_zip_to_s3(s3, bucket=OUT, key="big.zip", members=members, part_size=PART)

    # moto rejects any non-final part under 5 MiB, so completing at all proves the split.
    etag = s3.head_object(Bucket=OUT, Key="big.zip")["ETag"]
    assert multipart_count(etag) == math.ceil(result.size / PART) >= 3
    archive = open_zip(download(s3, "big.zip"))
    assert {name: archive.read(name) for name in archive.namelist()} == jpegs


def test_small_archive_is_a_single_part_multipart_upload(s3: Any) -> None:
    member = put(s3, "results/tiny.jpg", noise_jpeg(7, 64, 64))

    result = write_zip_to_s3(s3, bucket=OUT, key="tiny.zip", members=[member])

    assert multipart_count(s3.head_object(Bucket=OUT, Key="tiny.zip")["ETag"]) == 1
    assert result.size == len(download(s3, "tiny.zip")) < PART


def test_empty_member_list_gives_valid_empty_zip(s3: Any) -> None:
    result = write_zip_to_s3(s3, bucket=OUT, key="empty.zip", members=[])

    data = download(s3, "empty.zip")
    assert result == ZipResult(bucket=OUT, key="empty.zip", size=22, members=0)
    assert data == b"PK\x05\x06" + bytes(18)
    assert open_zip(data).namelist() == []


def test_empty_source_object_and_empty_inline_data(s3: Any) -> None:
    members = [put(s3, "results/zero.jpg", b""), ZipMember(name="empty.txt", data=b"")]

    write_zip_to_s3(s3, bucket=OUT, key="zero.zip", members=members)

    archive = open_zip(download(s3, "zero.zip"))
    assert [(i.filename, i.file_size) for i in archive.infolist()] == [
        ("zero.jpg", 0),
        ("empty.txt", 0),
    ]


def test_members_may_come_from_a_generator_and_keep_their_order(s3: Any) -> None:
    names = [f"dir/{i:03d}.jpg" for i in range(40)]
    for i, name in enumerate(names):
        s3.put_object(Bucket=SRC, Key=name, Body=f"image {i}".encode())

    result = write_zip_to_s3(
        s3,
        bucket=OUT,
        key="many.zip",
        members=(ZipMember(name=n, bucket=SRC, key=n) for n in names),
        read_chunk=3,
    )

    archive = open_zip(download(s3, "many.zip"))
    assert result.members == 40
    assert archive.namelist() == names
    assert archive.read("dir/007.jpg") == b"image 7"


# --- determinism ------------------------------------------------------------------


def test_reruns_overwrite_with_identical_bytes_and_etag(s3: Any) -> None:
    members = [put(s3, f"r/{i}.jpg", noise_jpeg(200 + i)) for i in range(2)]
    members.append(ZipMember(name="manifest.json", data=b'{"count": 2}'))

    write_zip_to_s3(s3, bucket=OUT, key="same.zip", members=members, part_size=PART)
    first = download(s3, "same.zip")
    first_etag = s3.head_object(Bucket=OUT, Key="same.zip")["ETag"]
    write_zip_to_s3(s3, bucket=OUT, key="same.zip", members=members, part_size=PART)
    write_zip_to_s3(s3, bucket=OUT, key="copy.zip", members=members, part_size=PART)

    assert download(s3, "same.zip") == first == download(s3, "copy.zip")
    assert s3.head_object(Bucket=OUT, Key="same.zip")["ETag"] == first_etag
    assert multipart_count(first_etag) == 2


def test_passed_in_timestamp_is_stamped_on_every_entry(s3: Any) -> None:
    members = [ZipMember(name="a.txt", data=b"a"), ZipMember(name="b.txt", data=b"b")]
    when = datetime(2024, 5, 17, 12, 30, 10)

    write_zip_to_s3(s3, bucket=OUT, key="t1.zip", members=members, date_time=when)
    write_zip_to_s3(s3, bucket=OUT, key="t2.zip", members=members, date_time=when)
    write_zip_to_s3(s3, bucket=OUT, key="epoch.zip", members=members)

    stamped = download(s3, "t1.zip")
    assert stamped == download(s3, "t2.zip") != download(s3, "epoch.zip")
    assert {i.date_time for i in open_zip(stamped).infolist()} == {(2024, 5, 17, 12, 30, 10)}


# --- failures ---------------------------------------------------------------------


class RecordingClient:
    """Wraps the moto client, records S3 calls by name, and injects failures on demand."""

    def __init__(
        self,
        client: Any,
        fail_part: int | None = None,
        abort_fails: bool = False,
        length_delta: int = 0,
    ) -> None:
        self._client = client
        self._fail_part = fail_part
        self._abort_fails = abort_fails
        self._length_delta = length_delta
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        return getattr(self._client, name)

    def upload_part(self, **kwargs: Any) -> Any:
        self.calls.append("upload_part")
        if kwargs["PartNumber"] == self._fail_part:
            raise ConnectionError("connection reset")
        return self._client.upload_part(**kwargs)

    def abort_multipart_upload(self, **kwargs: Any) -> Any:
        self.calls.append("abort_multipart_upload")
        if self._abort_fails:
            raise ClientError({"Error": {"Code": "InternalError"}}, "AbortMultipartUpload")
        return self._client.abort_multipart_upload(**kwargs)

    def get_object(self, **kwargs: Any) -> Any:
        self.calls.append("get_object")
        response = self._client.get_object(**kwargs)
        # botocore checks the body against the HTTP header, not this parsed field.
        response["ContentLength"] += self._length_delta
        return response


def test_missing_source_midway_aborts_upload_and_keeps_old_object(s3: Any) -> None:
    s3.put_object(Bucket=OUT, Key="job.zip", Body=b"previous archive")
    members = [
        put(s3, "r/big.jpg", random.Random(1).randbytes(6 * MIB)),  # fills a part first
        ZipMember(name="gone.jpg", bucket=SRC, key="r/gone.jpg"),
        ZipMember(name="never.txt", data=b"not reached"),
    ]
    client = RecordingClient(s3)

    with pytest.raises(ClientError) as caught:
        write_zip_to_s3(client, bucket=OUT, key="job.zip", members=members, part_size=PART,
                        parts_in_flight=1)

    assert caught.value.response["Error"]["Code"] == "NoSuchKey"
    # Nothing more is uploaded once the error is raised: straight to the abort.
    assert client.calls == [
        "create_multipart_upload",
        "get_object",
        "upload_part",
        "get_object",
        "abort_multipart_upload",
    ]
    assert pending_uploads(s3) == []
    assert download(s3, "job.zip") == b"previous archive"


def test_upload_part_failure_aborts_and_propagates(s3: Any) -> None:
    members = [put(s3, "r/big.bin", random.Random(2).randbytes(11 * MIB))]
    client = RecordingClient(s3, fail_part=2)

    with pytest.raises(ConnectionError):
        write_zip_to_s3(client, bucket=OUT, key="x.zip", members=members, part_size=PART)

    assert client.calls[-2:] == ["upload_part", "abort_multipart_upload"]
    assert "complete_multipart_upload" not in client.calls
    assert pending_uploads(s3) == []


def test_failed_abort_does_not_mask_the_original_error(s3: Any) -> None:
    members = [put(s3, "r/big.bin", random.Random(3).randbytes(6 * MIB))]
    client = RecordingClient(s3, fail_part=1, abort_fails=True)

    with pytest.raises(ConnectionError):
        write_zip_to_s3(client, bucket=OUT, key="x.zip", members=members, part_size=PART)


def test_source_shorter_or_longer_than_announced_aborts(s3: Any) -> None:
    members = [put(s3, "r/a.jpg", b"0123456789")]
    for delta in (-1, 1):
        client = RecordingClient(s3, length_delta=delta)

        with pytest.raises(OSError, match="announced"):
            write_zip_to_s3(client, bucket=OUT, key="x.zip", members=members)

        assert client.calls[-1] == "abort_multipart_upload"
    assert pending_uploads(s3) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=OUT)


def test_duplicate_names_abort_before_completing(s3: Any) -> None:
    members = [ZipMember(name="a.jpg", data=b"1"), ZipMember(name="a.jpg", data=b"2")]

    with pytest.raises(ValueError, match="duplicate"):
        write_zip_to_s3(s3, bucket=OUT, key="dup.zip", members=members)

    assert pending_uploads(s3) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=OUT)


@pytest.mark.parametrize(("part_size", "read_chunk"), [(PART - 1, MIB), (PART, 0)])
def test_bad_sizes_are_rejected_before_any_upload(s3: Any, part_size: int, read_chunk: int) -> None:
    with pytest.raises(ValueError):
        write_zip_to_s3(
            s3, bucket=OUT, key="x.zip", members=[], part_size=part_size, read_chunk=read_chunk
        )
    assert pending_uploads(s3) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"bucket": SRC},
        {"key": "k"},
        {"bucket": "", "key": "k"},
        {"bucket": SRC, "key": "k", "data": b"x"},
    ],
)
def test_member_needs_exactly_one_source(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="bucket and key, or data"):
        ZipMember(name="a.jpg", **kwargs)


@pytest.mark.parametrize(
    "name", ["", "/etc/passwd", "../up.jpg", "a/../../b.jpg", "a//b.jpg", "dir/", "a\\b", "n\x00"]
)
def test_unsafe_member_names_are_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="unsafe"):
        ZipMember(name=name, data=b"x")


def test_nested_and_unicode_names_are_kept(s3: Any) -> None:
    members = [ZipMember(name="job 1/café.jpg", data=b"x"), ZipMember(name="a/b/c.png", data=b"y")]

    write_zip_to_s3(s3, bucket=OUT, key="names.zip", members=members)

    assert open_zip(download(s3, "names.zip")).namelist() == ["job 1/café.jpg", "a/b/c.png"]


def test_zip64_records_are_written_when_limits_are_crossed(
    s3: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Lowering zipfile's 4 GiB limit exercises the same Zip64 paths as a 4 GiB+ archive.
    blobs = {f"{i}.jpg": random.Random(i).randbytes(MIB + MIB // 2) for i in range(3)}
    members = [put(s3, f"r/{name}", data) for name, data in blobs.items()]
    with monkeypatch.context() as patch:
        patch.setattr(zipfile, "ZIP64_LIMIT", MIB)
        write_zip_to_s3(s3, bucket=OUT, key="z64.zip", members=members)

    data = download(s3, "z64.zip")
    assert b"PK\x06\x06" in data[-200:]  # Zip64 end of central directory record
    archive = open_zip(data)
    assert all(info.extract_version >= 45 for info in archive.infolist())
    assert {name: archive.read(name) for name in archive.namelist()} == blobs
    (tmp_path / "z64.zip").write_bytes(data)
    unzip_test(tmp_path / "z64.zip")


# --- streaming memory bound, against a transport that keeps nothing in memory ----------


class PatternBody:
    """Raw HTTP body producing ``size`` deterministic bytes, never holding them all."""

    TILE = hashlib.sha256(b"pixelbatch").digest() * 2048  # 64 KiB
    STRIP = memoryview(TILE * 18)  # > 1 MiB past any offset into the tile

    def __init__(self, key: str, size: int) -> None:
        self._start = int(hashlib.sha256(key.encode()).hexdigest(), 16) % len(self.TILE)
        self._size = size
        self._pos = 0

    def read(self, amt: int | None = None) -> bytes:
        # read() with no size returns everything, as a real body would (and would show up
        # in the memory measurement if the code under test ever did it).
        wanted = self._size - self._pos if amt is None else min(amt, self._size - self._pos)
        pieces = []
        while wanted > 0:
            count = min(wanted, MIB)
            offset = (self._start + self._pos) % len(self.TILE)
            pieces.append(self.STRIP[offset : offset + count])
            self._pos += count
            wanted -= count
        return b"".join(pieces)

    def stream(self, **_: Any) -> Iterator[bytes]:
        while chunk := self.read(MIB):
            yield chunk

    def close(self) -> None:
        self._pos = self._size


class BytesBody:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data

    def read(self, amt: int | None = None) -> bytes:
        data, self._data = self._data, b""
        return data

    def close(self) -> None:
        self._data = b""


def sha256_of(key: str, size: int) -> str:
    digest, body = hashlib.sha256(), PatternBody(key, size)
    while chunk := body.read(MIB):
        digest.update(chunk)
    return digest.hexdigest()


class DiskBackedS3:
    """A real boto3 client whose S3 endpoint is answered in-process on ``before-send``.

    Sources are generated on the fly and uploaded parts go to files (joined in
    part order on completion, as parts may arrive in any order), so tracemalloc
    sees only botocore's and zipstream's own memory (moto keeps and copies every
    body in the test process, which would swamp the measurement).
    """

    def __init__(self, sources: dict[str, int], archive: Path, unsized: set[str] | None = None):
        self.sources = sources
        self.unsized = unsized or set()
        self.archive = archive
        self.sizes: dict[int, int] = {}
        self.aborted = False
        self.client = boto3.client(
            "s3",
            region_name="us-east-1",
            endpoint_url="http://s3.invalid",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        for op, handler in {
            "CreateMultipartUpload": self._create,
            "UploadPart": self._upload_part,
            "CompleteMultipartUpload": self._complete,
            "AbortMultipartUpload": self._abort,
            "GetObject": self._get,
        }.items():
            self.client.meta.events.register(f"before-send.s3.{op}", handler)

    @property
    def part_sizes(self) -> list[int]:
        return [self.sizes[n] for n in sorted(self.sizes)]

    def _part_file(self, number: int) -> Path:
        return self.archive.with_name(f"{self.archive.name}.part{number}")

    def _create(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        self.archive.write_bytes(b"")
        self.sizes.clear()
        xml = b"<InitiateMultipartUploadResult><UploadId>u-1</UploadId>"
        xml += b"</InitiateMultipartUploadResult>"
        return AWSResponse(request.url, 200, {}, BytesBody(xml))

    def _upload_part(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        number = int(parse_qs(urlsplit(request.url).query)["partNumber"][0])
        assert number not in self.sizes
        body, size, digest = request.body, 0, hashlib.md5()
        with self._part_file(number).open("wb") as out:
            while chunk := body.read(256 * 1024):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        self.sizes[number] = size
        crc = request.headers["x-amz-checksum-crc32"]
        headers = {
            "ETag": f'"{digest.hexdigest()}"',
            "x-amz-checksum-crc32": crc.decode() if isinstance(crc, bytes) else crc,
        }
        return AWSResponse(request.url, 200, headers, BytesBody(b""))

    def _complete(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        assert sorted(self.sizes) == list(range(1, len(self.sizes) + 1))
        with self.archive.open("wb") as out:
            for number in sorted(self.sizes):
                with self._part_file(number).open("rb") as part:
                    shutil.copyfileobj(part, out)
                self._part_file(number).unlink()
        xml = b"<CompleteMultipartUploadResult><ETag>&quot;e-1&quot;</ETag>"
        xml += b"</CompleteMultipartUploadResult>"
        return AWSResponse(request.url, 200, {}, BytesBody(xml))

    def _abort(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        self.aborted = True
        return AWSResponse(request.url, 204, {}, BytesBody(b""))

    def _get(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        key = unquote(urlsplit(request.url).path).split("/", 2)[2]
        size = self.sources[key]
        headers = {} if key in self.unsized else {"Content-Length": str(size)}
        return AWSResponse(request.url, 200, headers, PatternBody(key, size))


def members_for(sources: dict[str, int]) -> list[ZipMember]:
    return [ZipMember(name=key, bucket=SRC, key=key) for key in sources]


@pytest.mark.parametrize("in_flight", [1, 3])
def test_peak_memory_tracks_part_size_not_archive_size(
    aws_env: None, tmp_path: Path, in_flight: int
) -> None:
    sources = {"big/result_0.jpg": 24 * MIB + 12_345}
    sources |= {f"small/result_{i}.jpg": 2 * MIB + 777 * i for i in range(1, 5)}
    total = sum(sources.values())
    assert total >= 30 * MIB
    fake = DiskBackedS3(sources, tmp_path / "archive.zip")
    members = [*members_for(sources), ZipMember(name="manifest.json", data=b"{}")]
    # Warm-up: botocore loads models and endpoint rules once per client; not ours to count.
    write_zip_to_s3(fake.client, bucket=OUT, key="warm.zip", members=members[1:2])

    tracemalloc.start()
    try:
        result = write_zip_to_s3(
            fake.client, bucket=OUT, key="archive.zip", members=members, part_size=PART,
            parts_in_flight=in_flight,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    print(f"peak traced {peak / MIB:.2f} MiB while zipping {total / MIB:.2f} MiB")
    # The part being filled and each one uploading, one source chunk, and botocore's
    # ~2 MiB of checksum/send buffers per upload; with one at a time, a second copy of
    # a part (>= 2 * PART in total) cannot fit.
    assert peak < (in_flight + 1) * PART + MIB + in_flight * 2.5 * MIB < total
    assert fake.part_sizes[:-1] == [PART] * (len(fake.part_sizes) - 1)
    assert len(fake.part_sizes) == math.ceil(result.size / PART) >= 6
    assert result.size == fake.archive.stat().st_size
    assert not fake.aborted
    with zipfile.ZipFile(fake.archive) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == [*sources, "manifest.json"]
        for key, size in sources.items():
            with archive.open(key) as entry:
                digest = hashlib.file_digest(entry, "sha256").hexdigest()
            assert digest == sha256_of(key, size)
    unzip_test(fake.archive)


def test_source_without_content_length_is_written_as_zip64(aws_env: None, tmp_path: Path) -> None:
    sources = {"a.jpg": 300_000, "b.jpg": 123}
    fake = DiskBackedS3(sources, tmp_path / "unsized.zip", unsized={"a.jpg"})

    write_zip_to_s3(fake.client, bucket=OUT, key="unsized.zip", members=members_for(sources))

    with zipfile.ZipFile(fake.archive) as archive:
        assert archive.testzip() is None
        versions = {info.filename: info.extract_version for info in archive.infolist()}
        assert versions == {"a.jpg": 45, "b.jpg": 20}
        assert hashlib.sha256(archive.read("a.jpg")).hexdigest() == sha256_of("a.jpg", 300_000)
    unzip_test(fake.archive)


class SlowPartsClient:
    """Counts part uploads under way at once; each takes a little while, as over a network."""

    def __init__(self, client: Any, *, fail_part: int | None = None) -> None:
        self._client = client
        self._fail_part = fail_part
        self._lock = threading.Lock()
        self._running = 0
        self.most_at_once = 0
        self.finished_after_abort = 0
        self.aborted = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def upload_part(self, **kwargs: Any) -> Any:
        with self._lock:
            self._running += 1
            self.most_at_once = max(self.most_at_once, self._running)
        try:
            time.sleep(0.05)
            if kwargs["PartNumber"] == self._fail_part:
                raise ConnectionError("connection reset")
            return self._client.upload_part(**kwargs)
        finally:
            with self._lock:
                self._running -= 1
                self.finished_after_abort += self.aborted

    def abort_multipart_upload(self, **kwargs: Any) -> Any:
        self.aborted = True
        return self._client.abort_multipart_upload(**kwargs)


def test_overlapped_part_uploads_give_the_same_archive(s3: Any) -> None:
    members = [put(s3, f"r/{i}.bin", random.Random(i).randbytes(3 * MIB + i)) for i in range(8)]
    write_zip_to_s3(s3, bucket=OUT, key="one.zip", members=members, part_size=PART,
                    parts_in_flight=1)
    client = SlowPartsClient(s3)

    write_zip_to_s3(client, bucket=OUT, key="three.zip", members=members, part_size=PART)

    assert client.most_at_once == 3  # overlapped, and never more than three parts at once
    assert download(s3, "three.zip") == download(s3, "one.zip")
    one = s3.head_object(Bucket=OUT, Key="one.zip")["ETag"]
    assert s3.head_object(Bucket=OUT, Key="three.zip")["ETag"] == one


def test_a_failed_overlapped_part_aborts_after_every_upload_ended(s3: Any) -> None:
    members = [put(s3, f"r/{i}.bin", random.Random(i).randbytes(3 * MIB)) for i in range(8)]
    client = SlowPartsClient(s3, fail_part=2)

    with pytest.raises(ConnectionError):
        write_zip_to_s3(client, bucket=OUT, key="x.zip", members=members, part_size=PART)

    assert client.aborted and client.finished_after_abort == 0
    assert pending_uploads(s3) == []
    with pytest.raises(ClientError):
        s3.head_object(Bucket=OUT, Key="x.zip")


def test_parts_in_flight_must_be_positive(s3: Any) -> None:
    with pytest.raises(ValueError, match="parts_in_flight"):
        write_zip_to_s3(s3, bucket=OUT, key="x.zip", members=[], parts_in_flight=0)
