"""HTTP API (payload v2.0) events built from the sample in events/, as API Gateway sends them."""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parents[2]


@cache
def _base_event() -> dict[str, Any]:
    event: dict[str, Any] = json.loads((REPO / "events" / "api_tasks_get.json").read_text())
    return event


def match_route(route_keys: list[str], method: str, path: str) -> tuple[str, dict[str, str]]:
    """The template route that API Gateway would pick for this request, and its path params."""
    for route_key in route_keys:
        route_method, pattern = route_key.split(" ", 1)
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$"
        found = re.match(regex, path)
        if route_method == method and found:
            return route_key, found.groupdict()
    raise LookupError(f"no route for {method} {path}")


def http_event(
    route_key: str,
    path: str,
    path_params: dict[str, str],
    *,
    user: str | None,
    body: Any = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    event = copy.deepcopy(_base_event())
    method = route_key.split(" ", 1)[0]
    event["routeKey"] = event["requestContext"]["routeKey"] = route_key
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["pathParameters"] = path_params or None
    event["queryStringParameters"] = query or None
    event["rawQueryString"] = urlencode(query or {})
    event["headers"].update({k.lower(): v for k, v in (headers or {}).items()})
    if body is None:
        event.pop("body", None)
    else:
        event["body"] = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    if user is None:
        event["requestContext"].pop("authorizer", None)
    else:
        event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = user
    return event
