"""Transactions with retries on contention, and cancellation reasons read in order."""

from __future__ import annotations

import base64
import binascii
import json
import random
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from pixelbatch.errors import ConcurrentUpdate, InvalidCursor

_RETRYABLE_CODES = frozenset(
    {
        "TransactionConflictException",
        "TransactionInProgressException",
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
    }
)
_ATTEMPTS = 6


class TransactionCancelled(Exception):
    """A transaction lost a condition; `codes[i]` is the reason for TransactItems[i]."""

    def __init__(self, codes: Sequence[str]) -> None:
        super().__init__(", ".join(codes))
        self.codes = list(codes)

    def failed_at(self, index: int) -> bool:
        return index < len(self.codes) and self.codes[index] == "ConditionalCheckFailed"

    @property
    def condition_failed(self) -> bool:
        return "ConditionalCheckFailed" in self.codes


def transact(client: Any, items: list[dict[str, Any]]) -> None:
    """Run TransactWriteItems; retry contention with jittered backoff; raise TransactionCancelled
    when a condition fails, ConcurrentUpdate when contention outlasts the retries."""
    for attempt in range(_ATTEMPTS):
        try:
            client.transact_write_items(TransactItems=items)
            return
        except ClientError as error:
            codes = _cancellation_codes(error)
            if codes is not None and "ConditionalCheckFailed" in codes:
                raise TransactionCancelled(codes) from error
            if codes is None and _code(error) not in _RETRYABLE_CODES:
                raise
            if attempt == _ATTEMPTS - 1:
                raise ConcurrentUpdate() from error
            _backoff(attempt)


def update_conditionally(table: Any, **kwargs: Any) -> dict[str, Any] | None:
    """UpdateItem that answers None when its condition fails instead of raising."""
    for attempt in range(_ATTEMPTS):
        try:
            response = table.update_item(**kwargs)
            attributes: dict[str, Any] = response.get("Attributes", {})
            return attributes
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                return None
            if _code(error) not in _RETRYABLE_CODES or attempt == _ATTEMPTS - 1:
                raise
            _backoff(attempt)
    raise ConcurrentUpdate()


def query_all(table: Any, **kwargs: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while True:
        page = table.query(**kwargs)
        rows.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return rows
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def newest_first_page(
    table: Any, *, index: str, owner: tuple[str, str], limit: int, cursor: str | None,
    cursor_keys: tuple[str, ...],
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of an owner's rows from an index sorted by time, newest first, with an opaque
    cursor that only that owner can continue."""
    kwargs: dict[str, Any] = {
        "IndexName": index,
        "KeyConditionExpression": Key(owner[0]).eq(owner[1]),
        "ScanIndexForward": False,
        "Limit": limit,
    }
    if cursor:
        kwargs["ExclusiveStartKey"] = decode_cursor(cursor, keys=cursor_keys, owner=owner)
    page = table.query(**kwargs)
    last = page.get("LastEvaluatedKey")
    return page.get("Items", []), encode_cursor(last) if last else None


def plain(value: Any) -> Any:
    """Rows come back with Decimal numbers; the domain speaks int and float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def storable(value: Any) -> Any:
    """The inverse of `plain`: DynamoDB takes numbers as Decimal, never float."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {key: storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable(item) for item in value]
    return value


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _cancellation_codes(error: ClientError) -> list[str] | None:
    if _code(error) != "TransactionCanceledException":
        return None
    reasons = error.response.get("CancellationReasons") or []
    return [str(reason.get("Code") or "None") for reason in reasons]


def _backoff(attempt: int) -> None:
    time.sleep(random.uniform(0, min(1.0, 0.02 * 2**attempt)))


def encode_cursor(key: dict[str, Any]) -> str:
    """A page's LastEvaluatedKey as an opaque string for the client."""
    return base64.urlsafe_b64encode(json.dumps(plain(key)).encode()).decode()


def decode_cursor(cursor: str, *, keys: tuple[str, ...], owner: tuple[str, str]) -> dict[str, Any]:
    """Back to an ExclusiveStartKey, refusing anything but the caller's own key shape."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as error:
        raise InvalidCursor() from error
    if not isinstance(key, dict) or set(key) != set(keys) or key.get(owner[0]) != owner[1]:
        raise InvalidCursor()
    if not all(isinstance(value, str) for value in key.values()):
        raise InvalidCursor()
    return key
