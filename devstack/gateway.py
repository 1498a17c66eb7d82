"""The local HTTP API: routes from the template's HttpApi events, handlers called in process.

It behaves like API Gateway where clients can tell: payload format 2.0 events, the JWT
authorizer's 401 ``{"message":"Unauthorized"}``, 404 ``{"message":"Not Found"}`` for unknown
routes, 413 over 10 MB, 500 ``{"message":"Internal Server Error"}`` when a handler fails, and CORS
from the API's CorsConfiguration. ``/local/*`` are dev-only routes that never exist on AWS.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from werkzeug.serving import BaseWSGIServer
from werkzeug.wrappers import Request

from devstack.apigw import (
    HttpResponse,
    InvalidLambdaResponse,
    build_event,
    json_response,
    new_request_id,
    raw_path_of,
    to_http_response,
)
from devstack.auth import DEFAULT_TOKEN_TTL_SECONDS, DevTokens, Unauthorized, authorizer_claims
from devstack.handlers import HandlerLoadError, HandlerRegistry, context_for
from devstack.serving import PooledWSGIServer
from devstack.stack import SeedUnavailable
from devstack.template import HttpApi, JwtAuthorizer, Route, Template

__all__ = ["DEV_PLANS", "Gateway", "GatewayServer", "Router", "dev_authorizer"]

log = logging.getLogger("devstack.gateway")

MAX_BODY_BYTES = 10 * 1024 * 1024  # HTTP API's payload limit
DEV_PLANS = ("free", "pro", "enterprise")
ResetAccount = Callable[[str, int, str], None]

_NOT_FOUND = {"message": "Not Found"}
_UNAUTHORIZED = {"message": "Unauthorized"}
_INTERNAL_ERROR = {"message": "Internal Server Error"}
_TOO_LARGE = {"message": "Request Entity Too Large"}


class _BadRequest(ValueError):
    pass


class _Unavailable(RuntimeError):
    pass


# ---------------------------------------------------------------- routing


@dataclass(frozen=True)
class _CompiledRoute:
    route: Route
    pattern: re.Pattern[str]
    parameters: tuple[str, ...]
    rank: tuple[int, ...]


def _compile(route: Route) -> _CompiledRoute:
    parts: list[str] = []
    names: list[str] = []
    rank: list[int] = []
    for segment in route.path.strip("/").split("/"):
        param = re.fullmatch(r"\{([^}+]+)(\+?)\}", segment)
        if param is None:
            parts.append(re.escape(segment))
            rank.append(0)
        else:
            greedy = bool(param.group(2))
            parts.append(f"(?P<p{len(names)}>{'.+' if greedy else '[^/]+'})")
            names.append(param.group(1))
            rank.append(2 if greedy else 1)
    rank.append(1 if route.method == "ANY" else 0)
    pattern = re.compile("/" + "/".join(parts))
    return _CompiledRoute(route, pattern, tuple(names), tuple(rank))


class Router:
    """HTTP API route selection: the most specific path wins, then an exact method over ANY."""

    def __init__(self, routes: Iterable[Route]) -> None:
        compiled = [_compile(route) for route in routes]
        keys = [c.route.route_key for c in compiled]
        duplicates = sorted({key for key in keys if keys.count(key) > 1})
        if duplicates:
            raise ValueError(f"routes declared twice: {duplicates}")
        self._routes = sorted(compiled, key=lambda c: c.rank)

    def match(self, method: str, raw_path: str) -> tuple[Route, dict[str, str]] | None:
        for candidate in self._routes:
            if candidate.route.method not in (method, "ANY"):
                continue
            found = candidate.pattern.fullmatch(raw_path)
            if found:
                pairs = zip(candidate.parameters, found.groups(), strict=True)
                return candidate.route, {name: unquote(value) for name, value in pairs}
        return None


def dev_authorizer(template: Template) -> JwtAuthorizer | None:
    """The authorizer dev tokens are made for: the first API's default (or only) JWT one."""
    for api in template.http_apis.values():
        name = api.default_authorizer or next(iter(api.authorizers), None)
        if name is not None:
            return api.authorizers[name]
    return None


# ---------------------------------------------------------------- the WSGI application


class Gateway:
    """WSGI app: API Gateway in front of the template's functions, plus ``/local/*``."""

    def __init__(
        self,
        template: Template,
        registry: HandlerRegistry,
        tokens: DevTokens,
        reset_account: ResetAccount,
    ) -> None:
        self.template = template
        self.registry = registry
        self.tokens = tokens
        self.reset_account = reset_account
        self.router = Router(template.routes)
        self.cors = next((api.cors for api in template.http_apis.values() if api.cors), None)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterator[bytes]:
        request = Request(environ)
        started = time.perf_counter()
        response = self.handle(request)
        log.info("%s %s -> %d (%.1f ms)", request.method, request.full_path.rstrip("?"),
                 response.status, (time.perf_counter() - started) * 1000)
        headers = [*response.headers, ("content-length", str(len(response.body)))]
        start_response(f"{response.status} {_reason(response.status)}", headers)
        return iter([response.body])

    def handle(self, request: Request) -> HttpResponse:
        request_id = new_request_id()
        try:
            if request.path.startswith("/local/"):
                response = self._dev_route(request)
            elif self._is_preflight(request):
                response = HttpResponse(204, self._preflight_headers(request))
            else:
                response = self._api_route(request, request_id)
        except Exception:
            log.exception("gateway error on %s %s", request.method, request.path)
            response = json_response(500, _INTERNAL_ERROR)
        response.headers.append(("apigw-requestid", request_id))
        response.headers.extend(self._cors_headers(request))
        return response

    # ------------------------------------------------------------ template routes

    def _api_route(self, request: Request, request_id: str) -> HttpResponse:
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return json_response(413, _TOO_LARGE)
        raw_path = raw_path_of(request)
        matched = self.router.match(request.method, raw_path)
        if matched is None:
            return json_response(404, _NOT_FOUND)
        route, path_parameters = matched
        api = self.template.http_apis[route.api_logical_id]
        try:
            claims = self._authorize(request, api, route)
        except Unauthorized as exc:
            log.info("401 for %s: %s", route.route_key, exc)
            return json_response(401, _UNAUTHORIZED)
        body = request.get_data(cache=False)
        if len(body) > MAX_BODY_BYTES:
            return json_response(413, _TOO_LARGE)
        event = build_event(
            request, body, route.route_key, path_parameters, api.api_id,
            self.template.naming.account_id, request_id, claims,
        )
        return self._invoke(route, event)

    def _authorize(self, request: Request, api: HttpApi, route: Route) -> dict[str, str] | None:
        if route.authorizer is None:
            return None
        authorizer = api.authorizers[route.authorizer]
        header = authorizer.identity_source.removeprefix("$request.header.")
        claims = self.tokens.verify(request.headers.get(header), authorizer)
        return authorizer_claims(claims)

    def _invoke(self, route: Route, event: dict[str, Any]) -> HttpResponse:
        function = self.registry.function(route.function_id)
        started = time.monotonic()
        try:
            handler = self.registry.get(function.logical_id)
            result = handler(event, context_for(function))
            if time.monotonic() - started > function.timeout:
                # Lambda would have killed it; API Gateway answers 500 for the failed invocation
                log.error("%s ran past its %d s Timeout", function.logical_id, function.timeout)
                return json_response(500, _INTERNAL_ERROR)
            return to_http_response(result)
        except HandlerLoadError as exc:
            log.error("%s: %s: %s", function.logical_id, exc.error_type, exc)
        except InvalidLambdaResponse as exc:
            log.error("%s returned a response API Gateway rejects: %s", function.logical_id, exc)
        except Exception:
            log.exception("%s raised on %s", function.logical_id, route.route_key)
        return json_response(500, _INTERNAL_ERROR)

    # ------------------------------------------------------------ CORS

    def _is_preflight(self, request: Request) -> bool:
        return bool(
            self.cors
            and request.method == "OPTIONS"
            and request.headers.get("origin")
            and request.headers.get("access-control-request-method")
        )

    def _allowed_origin(self, request: Request) -> str | None:
        origin = request.headers.get("origin")
        if not self.cors or not origin:
            return None
        allowed = [str(o) for o in self.cors.get("AllowOrigins", [])]
        return "*" if "*" in allowed else origin if origin in allowed else None

    def _preflight_headers(self, request: Request) -> list[tuple[str, str]]:
        cors = self.cors or {}
        headers = [
            ("access-control-allow-methods", ",".join(cors.get("AllowMethods", []))),
            ("access-control-allow-headers", ",".join(cors.get("AllowHeaders", [])).lower()),
        ]
        if "MaxAge" in cors:
            headers.append(("access-control-max-age", str(cors["MaxAge"])))
        return headers

    def _cors_headers(self, request: Request) -> list[tuple[str, str]]:
        origin = self._allowed_origin(request)
        if origin is None:
            return []
        headers = [("access-control-allow-origin", origin)]
        exposed = (self.cors or {}).get("ExposeHeaders")
        if exposed:
            headers.append(("access-control-expose-headers", ",".join(exposed)))
        if (self.cors or {}).get("AllowCredentials"):
            headers.append(("access-control-allow-credentials", "true"))
        return headers

    # ------------------------------------------------------------ /local/* dev routes

    def _dev_route(self, request: Request) -> HttpResponse:
        route = f"{request.method} {request.path.rstrip('/')}"
        if route == "GET /local/health":
            return json_response(200, {"status": "ok"})
        if route == "POST /local/users":
            try:
                return self._create_user(request)
            except _BadRequest as exc:
                return json_response(400, {"message": str(exc)})
            except _Unavailable as exc:
                return json_response(501, {"message": str(exc)})
        return json_response(404, _NOT_FOUND)

    def _create_user(self, request: Request) -> HttpResponse:
        user = _parse_new_user(request.get_data(cache=False))
        try:
            self.reset_account(user.user_id, user.quota, user.plan)
        except SeedUnavailable as exc:
            raise _Unavailable(f"cannot create users yet: {exc}") from exc
        token, expires_at = self.tokens.issue(user.user_id, user.ttl_seconds)
        return json_response(
            200, {"token": token, "user_id": user.user_id, "expires_at": expires_at}
        )


@dataclass(frozen=True)
class _NewUser:
    user_id: str
    quota: int
    plan: str
    ttl_seconds: int


_NEW_USER_FIELDS = {"user_id", "quota", "plan", "ttl_seconds"}


def _parse_new_user(body: bytes) -> _NewUser:
    try:
        data = json.loads(body or b"null")
    except ValueError as exc:
        raise _BadRequest("body must be JSON") from exc
    if not isinstance(data, dict):
        raise _BadRequest("body must be a JSON object")
    unknown = sorted(set(data) - _NEW_USER_FIELDS)
    if unknown:
        raise _BadRequest(f"unknown fields: {', '.join(unknown)}")
    user_id, quota = data.get("user_id"), data.get("quota")
    plan, ttl = data.get("plan"), data.get("ttl_seconds", DEFAULT_TOKEN_TTL_SECONDS)
    if not isinstance(user_id, str) or not re.fullmatch(r"[A-Za-z0-9._@+-]{1,128}", user_id):
        raise _BadRequest("user_id must be 1-128 characters of A-Z a-z 0-9 . _ @ + -")
    if not isinstance(quota, int) or isinstance(quota, bool) or quota < 0:
        raise _BadRequest("quota must be an integer >= 0")
    if plan not in DEV_PLANS:
        raise _BadRequest(f"plan must be one of {', '.join(DEV_PLANS)}")
    if not isinstance(ttl, int) or isinstance(ttl, bool):
        raise _BadRequest("ttl_seconds must be an integer (negative makes an expired token)")
    return _NewUser(user_id, quota, plan, ttl)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


# ---------------------------------------------------------------- the server


class GatewayServer:
    """A threaded HTTP server for a :class:`Gateway`; port 0 picks a free port."""

    def __init__(self, app: Gateway, host: str = "127.0.0.1", port: int = 3000) -> None:
        self.app = app
        self.host = host
        self._requested_port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the gateway is not running")
        return int(self._server.server_port)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> GatewayServer:
        self._server = PooledWSGIServer(self.host, self._requested_port, self.app,
                                        "devstack-gateway")
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="devstack-gateway", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None
