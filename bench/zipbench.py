"""ZIP: write_zip_to_s3 of a batch's outputs against reading the same bytes once from the same
S3 (the local stack's moto server, another process), and the ZIP step's memory peak."""

from __future__ import annotations

import io
import tracemalloc
from functools import partial
from typing import Any

import boto3
from pixelbatch.imaging.pipeline import run_pipeline
from pixelbatch.zipstream import MIB, ZipMember, write_zip_to_s3

from bench.context import Context
from bench.photos import BATCH_INPUTS, batch_steps
from bench.report import Section, table
from bench.stats import Summary, median, rotated, timed

BUCKET = "pixelbatch-bench-zip"
ZIP_KEY = "bench/batch.zip"
COPY_KEY = "bench/concatenated.bin"
READ_CHUNK = MIB  # write_zip_to_s3's default read size
PART_SIZE = 8 * MIB  # write_zip_to_s3's default part size


def s3_client(endpoint_url: str) -> Any:
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


def write_zip(s3: Any, keys: list[str]) -> int:
    members = [ZipMember(name=f"result_{i + 1}.jpg", bucket=BUCKET, key=key)
               for i, key in enumerate(keys)]
    return write_zip_to_s3(s3, bucket=BUCKET, key=ZIP_KEY, members=members).size


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


METHOD = (
    "All three talk to the local stack's moto server (a separate process) over HTTP: "
    "`write_zip_to_s3` with its defaults (STORED, 8 MiB parts, 1 MiB reads); `get_object` of "
    "every member read in 1 MiB chunks; and the same reads fed into a plain multipart upload "
    "of 8 MiB parts (no ZIP format). They run in turn, forward then backward, after one "
    "warm-up ZIP. The memory peak is tracemalloc's (every Python allocation, bytes buffers "
    "included) over one more ZIP step, above what was allocated before it; moto keeps the "
    "archive in its own process, so it is not counted."
)


def run(ctx: Context) -> Section:
    outputs = batch_outputs(ctx)
    s3 = s3_client(ctx.stack().moto_url)
    keys = put_outputs(s3, outputs)
    write_zip(s3, keys)  # warm-up
    archive = s3.head_object(Bucket=BUCKET, Key=ZIP_KEY)["ContentLength"]
    zips, reads, copies = rotated(
        [partial(timed, partial(f, s3, keys)) for f in (write_zip, read_once, copy_once)],
        ctx.plan.zip_repeats,
    )
    versus_read = Summary.of([z / r for z, r in zip(zips, reads, strict=True)])
    versus_copy = Summary.of([z / c for z, c in zip(zips, copies, strict=True)])
    peak, largest, total = peak_bytes(s3, keys), max(map(len, outputs)), sum(map(len, outputs))
    rows: list[tuple[str, str]] = [
        ("members; archive", f"{len(outputs)} JPEGs, {total / MIB:.1f} MiB; "
                             f"{archive / MIB:.1f} MiB"),
        ("zip / read once", versus_read.fmt()),
        ("zip / plain copy (read + multipart write)", versus_copy.fmt()),
        ("median s: zip, read, copy",
         f"{median(zips):.2f}, {median(reads):.2f}, {median(copies):.2f}"),
        ("peak memory of the ZIP step", f"{peak / MIB:.1f} MiB"),
        ("peak / largest member", f"{peak / largest:.1f} (largest {largest / MIB:.2f} MiB)"),
        ("peak / part size", f"{peak / PART_SIZE:.2f} (part {PART_SIZE // MIB} MiB)"),
    ]
    headline = (
        f"zip / read once = {versus_read.fmt()}; zip / plain copy = {versus_copy.fmt()}; "
        f"memory peak {peak / largest:.1f}x the largest member ({peak / MIB:.1f} MiB for "
        f"{total / MIB:.0f} MiB of members)"
    )
    return Section("zip", "ZIP", headline, "\n\n".join([table(["", ""], rows), METHOD]))
