"""Fixed-window request counters per user and feature, expired by DynamoDB TTL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError


@dataclass(frozen=True)
class WindowCount:
    allowed: bool
    remaining: int
    reset_at: int


class RateLimitStore:
    def __init__(self, dynamodb: Any, *, table: str) -> None:
        self._table = dynamodb.Table(table)

    def hit(self, key: str, *, limit: int, window_seconds: int, now: float) -> WindowCount:
        """Count one request in the current window unless the window is already full."""
        window_start = int(now) - int(now) % window_seconds
        reset_at = window_start + window_seconds
        try:
            response = self._table.update_item(
                Key={"pk": f"{key}#{window_start}"},
                UpdateExpression="ADD hits :one SET expires_at = :expires",
                ConditionExpression="attribute_not_exists(hits) OR hits < :limit",
                ExpressionAttributeValues={":one": 1, ":limit": limit, ":expires": reset_at + 60},
                ReturnValues="UPDATED_NEW",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return WindowCount(allowed=False, remaining=0, reset_at=reset_at)
        hits = int(response["Attributes"]["hits"])
        return WindowCount(allowed=True, remaining=max(0, limit - hits), reset_at=reset_at)
