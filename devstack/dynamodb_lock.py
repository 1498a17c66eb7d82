"""Make every emulated DynamoDB request atomic, as DynamoDB's own are.

moto applies a TransactWriteItems by deep-copying each table it touches and, when a condition
fails, restoring those copies; two concurrent requests can therefore interleave, and a failed
transaction can roll back another request's committed write. The product's money rules depend
on serializable transactions, so the local stack runs one DynamoDB request at a time.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from moto.dynamodb.responses import DynamoHandler

_LOCK = threading.RLock()
_ORIGINAL: Callable[..., Any] | None = None


def install() -> None:
    global _ORIGINAL
    if _ORIGINAL is not None:
        return
    original = DynamoHandler.call_action
    if not callable(original):
        raise RuntimeError("moto.dynamodb.responses.DynamoHandler.call_action moved")

    @functools.wraps(original)
    def call_action(self: DynamoHandler) -> Any:
        with _LOCK:
            return original(self)

    _ORIGINAL = original
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


def installed() -> bool:
    return _ORIGINAL is not None
