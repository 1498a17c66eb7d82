"""US-East-1 list prices (on-demand, arm64 Lambda) and the S3 request tiers."""

from __future__ import annotations

SFN_PER_TRANSITION = 0.025 / 1000
DYNAMODB_PER_WRU = 0.625 / 1_000_000
DYNAMODB_PER_RRU = 0.125 / 1_000_000
LAMBDA_PER_GB_S = 0.0000133334
LAMBDA_PER_REQUEST = 0.20 / 1_000_000
EVENTBRIDGE_PER_EVENT = 1.00 / 1_000_000  # custom events published
S3_PER_PUT = 0.005 / 1000  # PUT, COPY, POST, LIST
S3_PER_GET = 0.0004 / 1000  # GET, HEAD and every other request
S3_FREE = frozenset({"DeleteObject", "DeleteObjects", "AbortMultipartUpload"})
S3_PUT_TIER = frozenset({
    "PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart", "UploadPartCopy",
    "CompleteMultipartUpload", "ListObjects", "ListObjectsV2", "ListParts",
    "ListMultipartUploads", "ListBuckets",
})


def s3_tier(operation: str) -> str | None:
    """"put" or "get" for a billed request, None for a free one."""
    if operation in S3_FREE:
        return None
    return "put" if operation in S3_PUT_TIER else "get"
