"""The resolver every API Lambda uses. Domain errors become the contract's replies here and
nowhere else; anything unexpected is logged and answered with a bare 500."""

from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from pixelbatch.errors import (
    DomainError,
    InvalidBody,
    InvalidQuery,
    NotFound,
    RateLimited,
    Unauthorized,
)
from pixelbatch.observability import logger

JSON = "application/json; charset=utf-8"


def _dumps(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)


def create_app() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(serializer=_dumps)

    @app.exception_handler(DomainError)
    def _domain(error: DomainError) -> Response:
        if error.http_status >= 500:
            logger.error("request failed", error_type=type(error).__name__)
        return error_reply(error)

    @app.not_found
    def _no_route(_: NotFoundError) -> Response:
        return error_reply(NotFound())

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response:
        logger.exception("unhandled error")
        return error_reply(DomainError())

    return app


def error_reply(error: DomainError) -> Response:
    """The one place a domain error becomes a reply: its status, `errorCode`, message and the
    stable `error` key of its type."""
    if isinstance(error, Unauthorized):  # the same reply the JWT authorizer gives
        return Response(401, JSON, _dumps({"message": "Unauthorized"}))
    if isinstance(error, RateLimited):
        extra = {"rateLimitInfo": {"resetAt": error.reset_at, "remaining": error.remaining}}
        headers = {"Retry-After": str(max(1, error.reset_at - _now_seconds()))}
        return _failure(error, extra, headers)
    return _failure(error)


def ok(data: Any, status: int = 200) -> Response:
    return Response(status, JSON, _dumps({"success": True, "data": data}))


def ok_flat(fields: dict[str, Any]) -> Response:
    """retry-failed and cancel put their fields beside `success` (the contract's shape)."""
    return Response(200, JSON, _dumps({"success": True, **fields}))


def redirect(location: str) -> Response:
    return Response(302, None, "", headers={"Location": location, "Cache-Control": "no-store"})


def body_text(app: APIGatewayHttpResolver) -> str | None:
    """The request body as text; bytes that are not UTF-8 are a client mistake, not a 500."""
    try:
        return app.current_event.decoded_body
    except (UnicodeDecodeError, ValueError) as error:
        raise InvalidBody("请求体必须是UTF-8编码的JSON") from error


def current_user(app: APIGatewayHttpResolver) -> str:
    """The JWT authorizer has verified the token; its `sub` claim is the user id."""
    claims = app.current_event.request_context.authorizer.jwt_claim or {}
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise Unauthorized()
    return sub


def query_int(app: APIGatewayHttpResolver, name: str, *, default: int, low: int, high: int) -> int:
    raw = app.current_event.get_query_string_value(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise InvalidQuery(f"{name}必须是{low}到{high}之间的整数")
    return int(raw)


def query_bool(app: APIGatewayHttpResolver, name: str, *, default: bool) -> bool:
    raw = app.current_event.get_query_string_value(name)
    if raw is None:
        return default
    if raw.lower() not in ("true", "false", "1", "0"):
        raise InvalidQuery(f"{name}必须是true或false")
    return raw.lower() in ("true", "1")


def _failure(
    error: DomainError,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = {
        "success": False, "errorCode": error.error_code, "message": error.message,
        "error": error.key, **(extra or {}),
    }
    return Response(error.http_status, JSON, _dumps(body), headers=headers)


def _now_seconds() -> int:
    return int(time.time())
