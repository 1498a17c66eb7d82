"""S3 objects: outputs, presigned URLs (made on request, never stored)."""

from __future__ import annotations

import contextlib
from typing import Any

from botocore.exceptions import ClientError


class ObjectStore:
    def __init__(self, s3: Any, *, presign_ttl_seconds: int) -> None:
        self.client = s3
        self._ttl = presign_ttl_seconds

    def put(self, bucket: str, key: str, data: bytes, *, content_type: str) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)

    def delete(self, bucket: str, key: str) -> None:
        # Best effort: an orphaned output expires with the bucket's lifecycle rule.
        with contextlib.suppress(ClientError):
            self.client.delete_object(Bucket=bucket, Key=key)

    def presign_get(self, bucket: str, key: str, *, attachment_name: str | None = None) -> str:
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if attachment_name:
            params["ResponseContentDisposition"] = f'attachment; filename="{attachment_name}"'
        url: str = self.client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=self._ttl
        )
        return url

    def presign_put(self, bucket: str, key: str, *, content_type: str, size: int) -> str:
        url: str = self.client.generate_presigned_url(
            "put_object",
            Params={"Bucket": bucket, "Key": key, "ContentType": content_type,
                    "ContentLength": size},
            ExpiresIn=self._ttl,
        )
        return url

    @property
    def ttl_seconds(self) -> int:
        return self._ttl
