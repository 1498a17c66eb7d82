"""ZIP: write_zip_to_s3 of a batch's outputs against reading the same bytes once from the same
S3 and against a plain multipart copy of them, with part uploads overlapping the reads (after)
and one part at a time (before), on moto in this process and on the local stack's moto server
(another process); and the ZIP step's memory peak."""

from __future__ import annotations

import io
import os
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any
from unittest import mock

import boto3
from moto import mock_aws
from pixelbatch.imaging.pipeline import run_pipeline
from pixelbatch.zipstream import MIB, PARTS_IN_FLIGHT, ZipMember, write_zip_to_s3

from bench.context import Context
from bench.photos import BATCH_INPUTS, batch_steps
from bench.report import Section, table
from bench.stats import Summary, median, rotated, timed

BUCKET = "pixelbatch-bench-zip"
ZIP_KEY = "bench/batch.zip"
COPY_KEY = "bench/concatenated.bin"
READ_CHUNK = MIB  # write_zip_to_s3's default read size
PART_SIZE = 8 * MIB  # write_zip_to_s3's default part size


def s3_client(endpoint_url: str | None) -> Any:
    return boto3.client(
        "s3", endpoint_url=endpoint_url, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )


def batch_outputs(ctx: Context) -> list[bytes]:
    """Real basic_clean outputs: those of the floor benchmark, or made now."""
    if ctx.batch_outputs is None or len(ctx.batch_outputs) < ctx.plan.images:
        steps = batch_steps()
        ctx.batch_outputs = [run_pipeline(p.data, steps, BATCH_INPUTS).data for p in ctx.photos()]
    return ctx.batch_outputs[: ctx.plan.images]


def put_outputs(s3: Any, outputs: list[bytes]) -> list[str]:
    s3.create_bucket(Bucket=BUCKET)
    keys = [f"outputs/{index:04d}-a1.jpg" for index in range(len(outputs))]
    for key, data in zip(keys, outputs, strict=True):
        s3.put_object(Bucket=BUCKET, Key=key, Body=data, ContentType="image/jpeg")
    return keys


def write_zip(s3: Any, keys: list[str], parts_in_flight: int = PARTS_IN_FLIGHT) -> int:
    members = [ZipMember(name=f"result_{i + 1}.jpg", bucket=BUCKET, key=key)
               for i, key in enumerate(keys)]
    return write_zip_to_s3(s3, bucket=BUCKET, key=ZIP_KEY, members=members,
                           parts_in_flight=parts_in_flight).size


def read_once(s3: Any, keys: list[str]) -> int:
    """Every member's bytes read once, in the ZIP writer's chunk size."""
    total = 0
    for key in keys:
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"]
        while chunk := body.read(READ_CHUNK):
            total += len(chunk)
        body.close()
    return total


def copy_once(s3: Any, keys: list[str]) -> None:
    """The same bytes read once and written once, concatenated into a plain multipart upload
    of the same part size: what the ZIP step costs without the ZIP format."""
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key=COPY_KEY)["UploadId"]
    parts: list[dict[str, Any]] = []
    buffer = io.BytesIO()

    def send() -> None:
        reply = s3.upload_part(Bucket=BUCKET, Key=COPY_KEY, UploadId=upload,
                               PartNumber=len(parts) + 1, Body=buffer.getvalue())
        parts.append({"PartNumber": len(parts) + 1, "ETag": reply["ETag"]})
        buffer.seek(0)
        buffer.truncate()

    for key in keys:
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"]
        while chunk := body.read(READ_CHUNK):
            buffer.write(chunk)
            if buffer.tell() >= PART_SIZE:
                send()
        body.close()
    send()
    s3.complete_multipart_upload(Bucket=BUCKET, Key=COPY_KEY, UploadId=upload,
                                 MultipartUpload={"Parts": parts})


def peak_bytes(s3: Any, keys: list[str]) -> int:
    """tracemalloc's peak over one ZIP step, above what was allocated before it."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        write_zip(s3, keys)
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


@dataclass(frozen=True)
class StoreRun:
    """One S3 store: the ZIP one part at a time (before) and overlapped (after), the read and
    the copy, each repeated in turn."""

    store: str
    before: list[float]
    after: list[float]
    reads: list[float]
    copies: list[float]
    archive_bytes: int
    peak_bytes: int

    def versus(self, zips: list[float], yardstick: list[float]) -> Summary:
        return Summary.of([z / y for z, y in zip(zips, yardstick, strict=True)])

    def row(self) -> tuple[str, ...]:
        return (
            self.store,
            f"{self.versus(self.before, self.copies).median:.2f} → "
            f"{self.versus(self.after, self.copies).fmt()}",
            f"{self.versus(self.before, self.reads).median:.2f} → "
            f"{self.versus(self.after, self.reads).fmt()}",
            f"{self.versus(self.after, self.before).fmt()}",
            f"{median(self.before):.2f}, {median(self.after):.2f}, {median(self.reads):.2f}, "
            f"{median(self.copies):.2f}",
            f"{self.peak_bytes / MIB:.1f}",
        )


def measure_store(store: str, s3: Any, outputs: list[bytes], repeats: int) -> StoreRun:
    keys = put_outputs(s3, outputs)
    write_zip(s3, keys)  # warm-up
    archive = s3.head_object(Bucket=BUCKET, Key=ZIP_KEY)["ContentLength"]
    actions: list[Callable[[], object]] = [
        partial(write_zip, s3, keys, 1), partial(write_zip, s3, keys),
        partial(read_once, s3, keys), partial(copy_once, s3, keys),
    ]
    before, after, reads, copies = rotated([partial(timed, a) for a in actions], repeats)
    return StoreRun(store, before, after, reads, copies, archive, peak_bytes(s3, keys))


def in_process(outputs: list[bytes], repeats: int) -> StoreRun:
    fake = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1"}
    with mock.patch.dict(os.environ, fake), mock_aws():
        return measure_store("moto in process", s3_client(None), outputs, repeats)


METHOD = (
    "`write_zip_to_s3` with its defaults (STORED, 8 MiB parts, 1 MiB reads) with part uploads "
    f"overlapping the reads (after: up to {PARTS_IN_FLIGHT} parts uploading on worker threads) "
    "and with each part uploaded before reading on (before: `parts_in_flight=1`); "
    "`get_object` of every member read in 1 MiB chunks (read once); and the same reads fed "
    "into a plain multipart upload of 8 MiB parts, one part at a time, no ZIP format (copy). "
    "On moto in this process (`mock_aws`: every request handled in this interpreter) and on "
    "the local stack's moto server (a separate process, over HTTP). Per store the four run in "
    "turn, forward then backward, after one warm-up ZIP. The memory peak is tracemalloc's "
    "(every Python allocation, bytes buffers included) over one more ZIP step with overlap, "
    "above what was allocated before it; the server keeps the archive in its own process, so "
    "there it is not counted (in process, moto's own copies of the parts are)."
)


def ratio(run: StoreRun, yardstick: list[float]) -> str:
    return (f"{run.versus(run.before, yardstick).median:.2f} → "
            f"{run.versus(run.after, yardstick).median:.2f}")


def run(ctx: Context) -> Section:
    outputs = batch_outputs(ctx)
    server = measure_store("moto server", s3_client(ctx.stack().moto_url), outputs,
                           ctx.plan.zip_repeats)
    local = in_process(outputs, ctx.plan.zip_repeats)
    largest, total = max(map(len, outputs)), sum(map(len, outputs))
    headers = ["Store", "zip / plain copy, before → after", "zip / read once, before → after",
               "after / before", "median s: before, after, read, copy", "peak MiB (after)"]
    facts: list[tuple[str, str]] = [
        ("members; archive", f"{len(outputs)} JPEGs, {total / MIB:.1f} MiB; "
                             f"{server.archive_bytes / MIB:.1f} MiB"),
        ("peak / largest member (server)",
         f"{server.peak_bytes / largest:.1f} (largest {largest / MIB:.2f} MiB)"),
        ("peak / part size (server)", f"{server.peak_bytes / PART_SIZE:.2f} "
                                      f"(part {PART_SIZE // MIB} MiB)"),
    ]
    headline = (
        f"zip / plain copy: server {ratio(server, server.copies)}, in process "
        f"{ratio(local, local.copies)}; zip / read once: server {ratio(server, server.reads)}, "
        f"in process {ratio(local, local.reads)}; overlapped / one part at a time: server "
        f"{server.versus(server.after, server.before).median:.2f}, in process "
        f"{local.versus(local.after, local.before).median:.2f}"
    )
    body = "\n\n".join([table(headers, [server.row(), local.row()]), table(["", ""], facts),
                          METHOD])
    return Section("zip", "ZIP", headline, body)
