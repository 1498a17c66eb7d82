"""Stream a ZIP archive of S3 objects into S3 with a multipart upload.

The archive is never held in memory: member bytes flow from ``get_object`` in
``read_chunk`` pieces through :mod:`zipfile` into a buffer of at most one part,
which is handed to ``upload_part`` as soon as it is full.  Up to
``parts_in_flight`` parts upload on worker threads while the next members are
read (boto3 clients are thread-safe); a full part waits for the oldest upload
when that many are under way.  Peak memory is therefore
O((parts_in_flight + 1) * part_size + read_chunk), whatever the member and
archive sizes, and the bytes are the same whatever ``parts_in_flight``.

The standard library's zipfile is used rather than a third-party streaming zip
package: given a sink without ``seek()`` it writes each member's CRC and sizes
in a trailing data descriptor instead of seeking back, and it emits Zip64
records on demand, which is all that STORED streaming needs, with no extra
dependency in the layer.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

__all__ = ["ZipMember", "ZipResult", "write_zip_to_s3"]

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB  # S3 floor for every part except the last
MAX_PART_SIZE = 5 * 1024 * MIB
MAX_PARTS = 10_000
PARTS_IN_FLIGHT = 3  # uploads overlapping the reads; each holds one part in memory
CONTENT_TYPE = "application/zip"
CHECKSUM_ALGORITHM: Final = "CRC32"
DEFAULT_DATE_TIME = (1980, 1, 1, 0, 0, 0)

_UNIX_SYSTEM = 3  # fixed so archives are byte-identical whatever OS builds them
_FILE_ATTR = 0o100644 << 16  # regular file, rw-r--r--

DateTuple = tuple[int, int, int, int, int, int]


@dataclass(frozen=True)
class ZipMember:
    """One archive entry: an S3 object (bucket + key) or small inline bytes (data)."""

    name: str
    bucket: str | None = None
    key: str | None = None
    data: bytes | None = None

    def __post_init__(self) -> None:
        _check_name(self.name)
        from_s3 = self.bucket is not None or self.key is not None
        if from_s3 == (self.data is not None) or (from_s3 and not (self.bucket and self.key)):
            raise ValueError(f"member {self.name!r} needs either bucket and key, or data")


@dataclass(frozen=True)
class ZipResult:
    bucket: str
    key: str
    size: int
    members: int


def write_zip_to_s3(
    s3_client: S3Client,
    *,
    bucket: str,
    key: str,
    members: Iterable[ZipMember],
    part_size: int = 8 * MIB,
    read_chunk: int = MIB,
    content_disposition: str | None = None,
    date_time: datetime | None = None,
    parts_in_flight: int = PARTS_IN_FLIGHT,
) -> ZipResult:
    """Write ``members`` (in order, STORED) as a ZIP to ``s3://bucket/key``.

    Always a multipart upload, a single (possibly small) part for small archives.
    Every entry carries ``date_time`` (default 1980-01-01 00:00:00), so the same
    inputs give byte-identical archives and identical ETags on reruns, which
    simply overwrite the key.  ``parts_in_flight`` parts may upload while the
    next members are read (1: each part is uploaded before reading on).  On any
    error the upload is aborted and the error re-raised; an existing object at
    ``key`` is left untouched.
    """
    _check_sizes(part_size, read_chunk)
    if parts_in_flight < 1:
        raise ValueError("parts_in_flight must be at least 1")
    stamp = _date_tuple(date_time)
    upload = _MultipartUpload.start(s3_client, bucket, key, content_disposition, parts_in_flight)
    sink = _PartSink(part_size)
    try:
        count = _ArchiveWriter(s3_client, sink, upload, read_chunk, stamp).write_all(members)
        upload.send(sink.take_rest())
        upload.complete()
    except BaseException:
        upload.abort()
        raise
    finally:
        upload.close()
    logger.info(
        "zip written",
        extra={"bucket": bucket, "key": key, "size": sink.tell(), "members": count},
    )
    return ZipResult(bucket=bucket, key=key, size=sink.tell(), members=count)


def _check_name(name: str) -> None:
    # Reject names that could escape the extraction directory or collide with dirs.
    segments = name.split("/")
    if "\\" in name or "\x00" in name or any(s in ("", ".", "..") for s in segments):
        raise ValueError(f"unsafe archive member name: {name!r}")


def _check_sizes(part_size: int, read_chunk: int) -> None:
    if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
        raise ValueError(f"part_size must be within [{MIN_PART_SIZE}, {MAX_PART_SIZE}]")
    if read_chunk < 1:
        raise ValueError("read_chunk must be positive")


def _date_tuple(value: datetime | None) -> DateTuple:
    if value is None:
        return DEFAULT_DATE_TIME
    if not 1980 <= value.year <= 2107:  # range of the DOS date field
        raise ValueError("date_time must fall within 1980..2107")
    return (value.year, value.month, value.day, value.hour, value.minute, value.second)


class _PartSink:
    """Write-only, non-seekable file object that cuts the archive into S3 parts.

    Having no ``seek`` makes zipfile stream (data descriptors).  ``write`` only
    buffers: parts are shipped when the caller drains ``pop_full``, so unwinding
    after an error (which still makes zipfile write trailers) never does I/O.
    """

    def __init__(self, part_size: int) -> None:
        self._part_size = part_size
        self._buf = io.BytesIO()
        self._full: deque[io.BytesIO] = deque()
        self._written = 0

    def write(self, data: bytes) -> int:
        view = memoryview(data).cast("B")
        size = view.nbytes
        self._written += size
        while view:
            room = self._part_size - self._buf.tell()
            self._buf.write(view[:room])
            view = view[room:]
            if self._buf.tell() == self._part_size:
                # Parts are exactly part_size long so multipart ETags are reproducible.
                self._full.append(self._buf)
                self._buf = io.BytesIO()
        return size

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        """Nothing to do: parts are uploaded by the owner via ``pop_full``."""

    def close(self) -> None:
        """Nothing to release; the multipart upload is completed by the owner."""

    def pop_full(self) -> Iterator[io.BytesIO]:
        while self._full:
            yield _rewound(self._full.popleft())

    def take_rest(self) -> io.BytesIO:
        rest, self._buf = self._buf, io.BytesIO()
        return _rewound(rest)


def _rewound(part: io.BytesIO) -> io.BytesIO:
    # A file object, not bytes(): botocore streams it in chunks, whereas turning
    # the buffer into bytes would hold a second copy of the part.
    part.seek(0)
    return part


class _MultipartUpload:
    """One S3 multipart upload: numbered parts with CRC32 checksums, up to
    ``in_flight`` of them uploading at once on worker threads."""

    def __init__(
        self, client: S3Client, bucket: str, key: str, upload_id: str, in_flight: int = 1
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._upload_id = upload_id
        self._in_flight = in_flight
        self._numbered = 0
        self._parts: list[CompletedPartTypeDef] = []
        self._uploading: deque[Future[CompletedPartTypeDef]] = deque()
        self._workers = (
            ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="zip-part")
            if in_flight > 1 else None
        )

    @classmethod
    def start(
        cls, client: S3Client, bucket: str, key: str, content_disposition: str | None,
        in_flight: int = 1,
    ) -> _MultipartUpload:
        extra: dict[str, Any] = {}
        if content_disposition is not None:
            extra["ContentDisposition"] = content_disposition
        response = client.create_multipart_upload(
            Bucket=bucket,
            Key=key,
            ContentType=CONTENT_TYPE,
            ChecksumAlgorithm=CHECKSUM_ALGORITHM,
            **extra,
        )
        return cls(client, bucket, key, response["UploadId"], in_flight)

    def send(self, body: io.BytesIO) -> None:
        # Bodies are never empty: every archive ends with a 22-byte end record.
        number = self._numbered + 1
        if number > MAX_PARTS:
            raise ValueError(f"archive needs more than {MAX_PARTS} parts; raise part_size")
        self._numbered = number
        if self._workers is None:
            self._parts.append(self._upload(number, body))
            return
        while len(self._uploading) >= self._in_flight:
            self._settle_oldest()
        self._uploading.append(self._workers.submit(self._upload, number, body))

    def _upload(self, number: int, body: io.BytesIO) -> CompletedPartTypeDef:
        response = self._client.upload_part(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=body,
            ChecksumAlgorithm=CHECKSUM_ALGORITHM,
        )
        part: CompletedPartTypeDef = {"PartNumber": number, "ETag": response["ETag"]}
        if "ChecksumCRC32" in response:
            # Required by S3 because the upload was created with ChecksumAlgorithm.
            part["ChecksumCRC32"] = response["ChecksumCRC32"]
        return part

    def _settle_oldest(self) -> None:
        # Oldest first keeps the list in part-number order; an upload's error surfaces here.
        self._parts.append(self._uploading.popleft().result())

    def send_all(self, bodies: Iterable[io.BytesIO]) -> None:
        for body in bodies:
            self.send(body)

    def complete(self) -> None:
        while self._uploading:
            self._settle_oldest()
        self._client.complete_multipart_upload(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )

    def abort(self) -> None:
        # Parts still uploading would otherwise land after the abort and be kept (and billed).
        for upload in self._uploading:
            upload.cancel()
        wait(self._uploading)
        self._uploading.clear()
        try:
            self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
            )
        except Exception:
            # Never mask the original error; a bucket lifecycle rule is the backstop.
            logger.exception(
                "abort_multipart_upload failed",
                extra={"bucket": self._bucket, "key": self._key, "upload_id": self._upload_id},
            )

    def close(self) -> None:
        if self._workers is not None:
            self._workers.shutdown(wait=True)


class _ArchiveWriter:
    """Feeds members through zipfile into the sink, shipping parts as they fill."""

    def __init__(
        self,
        client: S3Client,
        sink: _PartSink,
        upload: _MultipartUpload,
        read_chunk: int,
        stamp: DateTuple,
    ) -> None:
        self._client = client
        self._sink = sink
        self._upload = upload
        self._read_chunk = read_chunk
        self._stamp = stamp

    def write_all(self, members: Iterable[ZipMember]) -> int:
        names: set[str] = set()
        # On error the context exit still writes the central directory, but only
        # into the sink's buffer: nothing is uploaded before the abort.
        with zipfile.ZipFile(self._sink, mode="w", compression=zipfile.ZIP_STORED) as archive:
            for member in members:
                if member.name in names:
                    raise ValueError(f"duplicate archive member name: {member.name!r}")
                names.add(member.name)
                self._add(archive, member)
        self._drain()
        return len(names)

    def _add(self, archive: zipfile.ZipFile, member: ZipMember) -> None:
        if member.data is not None:
            self._copy(archive, member.name, len(member.data), io.BytesIO(member.data).read)
            return
        assert member.bucket is not None and member.key is not None
        response = self._client.get_object(Bucket=member.bucket, Key=member.key)
        body = response["Body"]
        try:
            self._copy(archive, member.name, response.get("ContentLength"), body.read)
        finally:
            body.close()

    def _copy(
        self, archive: zipfile.ZipFile, name: str, size: int | None, read: Callable[[int], bytes]
    ) -> None:
        info = zipfile.ZipInfo(name, date_time=self._stamp)
        info.compress_type = zipfile.ZIP_STORED
        info.create_system = _UNIX_SYSTEM
        info.external_attr = _FILE_ATTR
        # A known size lets zipfile choose Zip64 only where needed; unknown sizes
        # must assume the worst, since the local header is written before the data.
        info.file_size = size or 0
        copied = 0
        with archive.open(info, mode="w", force_zip64=size is None) as dest:
            # A plain read loop (not iter_chunks, whose generator keeps the last
            # chunk alive) so no chunk is held while a part uploads.
            while chunk := read(self._read_chunk):
                dest.write(chunk)
                copied += len(chunk)
                del chunk
                self._drain()
        if size is not None and copied != size:
            raise OSError(f"{name!r}: read {copied} bytes, source announced {size}")
        self._drain()

    def _drain(self) -> None:
        self._upload.send_all(self._sink.pop_full())
