"""API Gateway HTTP API payload format 2.0: requests to events, handler results to responses."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from werkzeug.wrappers import Request

from devstack.handlers import runtime_json

__all__ = [
    "HttpResponse",
    "InvalidLambdaResponse",
    "build_event",
    "json_response",
    "new_request_id",
    "raw_path_of",
    "to_http_response",
]

LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024

_TEXT_TYPES = (
    "text/",
    "application/json",
    "application/xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
    "application/graphql",
)


class InvalidLambdaResponse(ValueError):
    """API Gateway would answer 500 to this handler result."""


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None
                  ) -> HttpResponse:
    extra = list((headers or {}).items())
    return HttpResponse(
        status, [("content-type", "application/json"), *extra], json.dumps(payload).encode()
    )


def new_request_id() -> str:
    """Shaped like API Gateway's ids, e.g. ``JKJaXmPLvHcESHA=``."""
    return base64.b64encode(os.urandom(10)).decode()


# ---------------------------------------------------------------- request -> event


def _is_text(content_type: str) -> bool:
    kind = content_type.split(";")[0].strip().lower()
    return kind.startswith(_TEXT_TYPES) or kind.endswith("+json") or kind.endswith("+xml")


def _body_fields(request: Request, body: bytes) -> dict[str, Any]:
    if not body:
        return {"isBase64Encoded": False}
    if _is_text(request.headers.get("content-type", "")):
        try:
            return {"body": body.decode("utf-8"), "isBase64Encoded": False}
        except UnicodeDecodeError:
            pass
    return {"body": base64.b64encode(body).decode(), "isBase64Encoded": True}


def _headers(request: Request) -> dict[str, str]:
    headers: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        headers.setdefault(name.lower(), []).append(value)
    headers.pop("cookie", None)  # v2 moves cookies to their own field
    return {name: ",".join(values) for name, values in headers.items()}


def _cookies(request: Request) -> list[str]:
    header = request.headers.get("cookie", "")
    return [part.strip() for part in header.split(";") if part.strip()]


def _query(raw_query: str) -> dict[str, str]:
    values: dict[str, list[str]] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        values.setdefault(name, []).append(value)
    return {name: ",".join(items) for name, items in values.items()}


def raw_path_of(request: Request) -> str:
    """The path as the client sent it, still percent-encoded."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    return str(raw).split("?", 1)[0] if raw else request.path


def build_event(
    request: Request,
    body: bytes,
    route_key: str,
    path_parameters: Mapping[str, str],
    api_id: str,
    account_id: str,
    request_id: str,
    claims: Mapping[str, str] | None,
) -> dict[str, Any]:
    """The event API Gateway sends to a Lambda proxy integration, payload version 2.0."""
    now = time.time()
    raw_query = request.query_string.decode("latin-1")
    host = request.headers.get("host", "localhost")
    request_context: dict[str, Any] = {
        "accountId": account_id,
        "apiId": api_id,
        "domainName": host,
        "domainPrefix": host.split(".")[0].split(":")[0],
        "http": {
            "method": request.method,
            "path": unquote(raw_path_of(request)),
            "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
            "sourceIp": request.remote_addr or "127.0.0.1",
            "userAgent": request.headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route_key,
        "stage": "$default",
        "time": datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now * 1000),
    }
    if claims is not None:
        scopes = claims.get("scope")
        request_context["authorizer"] = {
            "jwt": {"claims": dict(claims), "scopes": scopes.split() if scopes else None}
        }
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path_of(request),
        "rawQueryString": raw_query,
        "headers": _headers(request),
        "requestContext": request_context,
    }
    if cookies := _cookies(request):
        event["cookies"] = cookies
    if raw_query:
        event["queryStringParameters"] = _query(raw_query)
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    event.update(_body_fields(request, body))
    return event


# ---------------------------------------------------------------- result -> response


def to_http_response(result: Any) -> HttpResponse:
    """Apply the v2.0 rules: a dict with ``statusCode`` is used as is, anything else is JSON."""
    try:
        payload = runtime_json(result)
    except (TypeError, ValueError) as exc:
        raise InvalidLambdaResponse(f"Runtime.MarshalError: {exc}") from exc
    if len(payload.encode()) > LAMBDA_RESPONSE_LIMIT:
        raise InvalidLambdaResponse("the response is over Lambda's 6 MB limit")
    if not (isinstance(result, dict) and "statusCode" in result):
        body = result if isinstance(result, str) else payload
        return HttpResponse(200, [("content-type", "application/json")], body.encode())
    return _structured(result)


def _structured(result: Mapping[str, Any]) -> HttpResponse:
    status = result["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise InvalidLambdaResponse(f"statusCode {status!r} is not an HTTP status")
    headers = [(str(k), _header_value(v)) for k, v in (result.get("headers") or {}).items()]
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((str(name), _header_value(value)) for value in values)
    headers.extend(("set-cookie", str(cookie)) for cookie in result.get("cookies") or [])
    return HttpResponse(status, headers, _response_body(result))


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise InvalidLambdaResponse(f"header value {value!r} is not a string")


def _response_body(result: Mapping[str, Any]) -> bytes:
    body = result.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise InvalidLambdaResponse(f"body must be a string, got {type(body).__name__}")
    if result.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except ValueError as exc:
            raise InvalidLambdaResponse("isBase64Encoded but the body is not base64") from exc
    return body.encode("utf-8")
