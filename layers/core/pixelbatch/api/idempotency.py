"""`Idempotency-Key` on the routes that move money, with Powertools' idempotency utility:
a repeated request gets the first reply without a second charge; the same key with a different
body is refused. Failures are not remembered, so a client may retry after fixing its request."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cached_property
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)

from pixelbatch.errors import IdempotencyKeyReused, InvalidIdempotencyKey, RequestInProgress

HEADER = "idempotency-key"
_KEY_FORMAT = re.compile(r"^[A-Za-z0-9._:\-]{8,128}$")
Reply = dict[str, Any]


class IdempotentRoutes:
    def __init__(self, table_name: str, *, expires_after_seconds: int = 24 * 3600) -> None:
        self._table_name = table_name
        self._config = IdempotencyConfig(
            event_key_jmespath="[user, route, key]",
            payload_validation_jmespath="body",
            expires_after_seconds=expires_after_seconds,
        )

    @cached_property
    def _once(self) -> Callable[..., Reply]:
        # The store's DynamoDB client is made by the first request that carries a key, not at
        # cold start: most requests carry none.
        store = DynamoDBPersistenceLayer(table_name=self._table_name)

        @idempotent_function(
            data_keyword_argument="request", persistence_store=store, config=self._config
        )
        def once(request: dict[str, Any], action: Callable[[], Reply]) -> Reply:
            return action()

        return once

    def register(self, context: Any) -> None:
        """Let in-progress records expire with the invocation, not after an hour."""
        self._config.register_lambda_context(context)

    def run(
        self, *, user: str, route: str, key: str | None, body: str | None,
        action: Callable[[], Reply],
    ) -> Reply:
        if key is None:
            return action()
        if not _KEY_FORMAT.match(key):
            raise InvalidIdempotencyKey()
        request = {"user": user, "route": route, "key": key, "body": _canonical(body)}
        try:
            reply: Reply = self._once(request=request, action=action)
        except IdempotencyValidationError as error:
            raise IdempotencyKeyReused() from error
        except IdempotencyAlreadyInProgressError as error:
            raise RequestInProgress() from error
        return reply


def _canonical(body: str | None) -> Any:
    """Compare bodies by meaning, not by whitespace or key order."""
    if not body:
        return None
    try:
        return json.dumps(json.loads(body), sort_keys=True, ensure_ascii=False)
    except ValueError:
        return body
