"""The local HTTP API in process (no sockets, no moto): routing from template.yaml, payload v2.0
events, the JWT authorizer's replies and API Gateway's response rules."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import jwt
import pytest
from werkzeug.test import Client, TestResponse

from devstack.auth import DevTokens
from devstack.gateway import MAX_BODY_BYTES, Gateway, Router, dev_authorizer
from devstack.handlers import HandlerRegistry
from devstack.stack import SeedUnavailable
from devstack.template import JwtAuthorizer, Route, Template, load_template

REPO = Path(__file__).resolve().parents[2]
SECRET = "test-secret"


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps({"event": event, "function": context.function_name})}


@dataclass
class Harness:
    template: Template
    client: Client
    tokens: DevTokens
    authorizer: JwtAuthorizer
    users: list[tuple[str, int, str]] = field(default_factory=list)
    reply: Callable[[dict[str, Any], Any], Any] = echo
    reset_error: Exception | None = None

    def route(self, predicate: Callable[[Route], bool]) -> Route:
        return next(route for route in self.template.routes if predicate(route))

    def token(self, user: str = "user-1", **claims: Any) -> str:
        return self.tokens.issue(user, extra_claims=claims)[0]

    def get(self, path: str, token: str | None = None, **kwargs: Any) -> TestResponse:
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.open(path, headers=headers, **kwargs)


@pytest.fixture
def gw() -> Harness:
    template = load_template(REPO / "template.yaml")
    authorizer = dev_authorizer(template)
    assert authorizer is not None
    tokens = DevTokens(SECRET, authorizer)
    harness: Harness

    def handler(event: dict[str, Any], context: Any) -> Any:
        return harness.reply(event, context)

    def reset_account(user_id: str, quota: int, plan: str) -> None:
        if harness.reset_error:
            raise harness.reset_error
        harness.users.append((user_id, quota, plan))

    overrides = {function.logical_id: handler for function in template.functions}
    gateway = Gateway(template, HandlerRegistry(template, overrides), tokens, reset_account)
    harness = Harness(template, Client(gateway, use_cookies=False), tokens, authorizer)
    return harness


def _event(response: TestResponse) -> dict[str, Any]:
    assert response.status_code == 200, response.get_data(as_text=True)
    event: dict[str, Any] = response.get_json()["event"]
    return event


# ---------------------------------------------------------------- events


def test_a_protected_route_gets_a_v2_event_with_the_token_claims(gw: Harness) -> None:
    route = gw.route(lambda r: r.auth_required and "{" in r.path and r.method == "GET")
    param = route.path.split("{")[1].split("}")[0]
    path = route.path.replace("{" + param + "}", "a%20b")

    event = _event(gw.get(
        path + "?x=1&x=2&y=", gw.token("user-7"),
        headers={"X-Custom": "v", "Cookie": "a=1; b=2", "User-Agent": "tests"},
    ))

    assert event["version"] == "2.0"
    assert event["routeKey"] == event["requestContext"]["routeKey"] == route.route_key
    assert event["rawPath"] == path
    assert event["pathParameters"] == {param: "a b"}
    assert event["rawQueryString"] == "x=1&x=2&y="
    assert event["queryStringParameters"] == {"x": "1,2", "y": ""}
    assert event["cookies"] == ["a=1", "b=2"]
    assert "cookie" not in event["headers"] and event["headers"]["x-custom"] == "v"
    assert all(name == name.lower() for name in event["headers"])
    assert event["isBase64Encoded"] is False and "body" not in event
    context = event["requestContext"]
    assert context["stage"] == "$default"
    assert context["http"] == {"method": "GET", "path": route.path.replace("{" + param + "}",
                               "a b"), "protocol": "HTTP/1.1", "sourceIp": context["http"][
                               "sourceIp"], "userAgent": "tests"}
    assert context["accountId"] == gw.template.naming.account_id
    assert isinstance(context["timeEpoch"], int) and context["requestId"]
    claims = context["authorizer"]["jwt"]["claims"]
    assert claims["sub"] == "user-7" and claims["token_use"] == "id"
    assert all(isinstance(value, str) for value in claims.values())  # as API Gateway passes them


def test_bodies_are_text_or_base64_by_content_type(gw: Harness) -> None:
    route = gw.route(lambda r: r.auth_required and r.method == "POST")
    text = _event(gw.get(route.path, gw.token(), method="POST", json={"a": "é"}))
    assert text["isBase64Encoded"] is False and json.loads(text["body"]) == {"a": "é"}

    raw = bytes(range(256))
    binary = _event(gw.get(route.path, gw.token(), method="POST", data=raw,
                           headers={"Content-Type": "application/octet-stream"}))
    assert binary["isBase64Encoded"] is True and base64.b64decode(binary["body"]) == raw


def test_public_routes_need_no_token_and_carry_no_authorizer(gw: Harness) -> None:
    route = gw.route(lambda r: not r.auth_required)
    event = _event(gw.get(route.path))
    assert "authorizer" not in event["requestContext"]


def test_each_route_reaches_its_own_function(gw: Harness) -> None:
    for route in gw.template.routes:
        path = route.path.replace("{", "x").replace("}", "")
        response = gw.get(path, gw.token(), method=route.method)
        assert response.get_json()["function"] == gw.template.function(route.function_id).name


def test_literal_segments_win_over_parameters() -> None:
    def route(method: str, path: str) -> Route:
        return Route(method, path, path, "e", "api", None)

    router = Router([route("GET", "/a/{id}"), route("GET", "/a/b"), route("ANY", "/a/{rest+}"),
                     route("GET", "/a/{id}/c")])
    assert router.match("GET", "/a/b")[0].path == "/a/b"  # type: ignore[index]
    assert router.match("GET", "/a/z")[0].path == "/a/{id}"  # type: ignore[index]
    assert router.match("GET", "/a/z/c")[0].path == "/a/{id}/c"  # type: ignore[index]
    assert router.match("POST", "/a/z/q/r") == (route("ANY", "/a/{rest+}"), {"rest": "z/q/r"})
    assert router.match("GET", "/b") is None


# ---------------------------------------------------------------- API Gateway's own replies


def test_unknown_routes_and_methods_are_404(gw: Harness) -> None:
    for method, path in (("GET", "/nope"), ("DELETE", "/api/quota"), ("GET", "/console")):
        response = gw.get(path, gw.token(), method=method)
        assert response.status_code == 404
        assert response.get_json() == {"message": "Not Found"}


def _protected(gw: Harness) -> str:
    return gw.route(lambda r: r.auth_required and r.method == "GET" and "{" not in r.path).path


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer not-a-jwt",
])
def test_missing_or_malformed_tokens_get_401(gw: Harness, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = gw.get(_protected(gw), headers=headers)
    assert response.status_code == 401
    assert response.get_json() == {"message": "Unauthorized"}


def _signed(gw: Harness, secret: str = SECRET, **changes: Any) -> str:
    now = int(time.time())
    claims = {"sub": "u", "iss": gw.authorizer.issuer, "aud": gw.authorizer.audience[0],
              "iat": now, "exp": now + 600, "token_use": "id", **changes}
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, secret, "HS256")


@pytest.mark.parametrize("changes", [
    {"secret": "another-key"},
    {"exp": int(time.time()) - 5},
    {"iss": "https://cognito-idp.us-east-1.amazonaws.com/elsewhere"},
    {"aud": "another-client"},
    {"sub": None},
    {"exp": None},
])
def test_tokens_the_authorizer_would_reject_get_401(gw: Harness, changes: dict[str, Any]
                                                    ) -> None:
    token = _signed(gw, **changes)
    response = gw.get(_protected(gw), token)
    assert response.status_code == 401
    assert response.get_json() == {"message": "Unauthorized"}


def test_access_tokens_match_on_client_id(gw: Harness) -> None:
    token = _signed(gw, aud=None, client_id=gw.authorizer.audience[0], token_use="access")
    assert gw.get(_protected(gw), token).status_code == 200


def test_bodies_over_10_mb_get_413(gw: Harness) -> None:
    route = gw.route(lambda r: r.auth_required and r.method == "POST")
    response = gw.get(route.path, gw.token(), method="POST", data=b"x" * (MAX_BODY_BYTES + 1))
    assert response.status_code == 413


def test_cors_preflight_follows_the_api_configuration(gw: Harness) -> None:
    response = gw.client.options(_protected(gw), headers={
        "Origin": "http://localhost:5173", "Access-Control-Request-Method": "GET"})
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] in ("*", "http://localhost:5173")
    assert "authorization" in response.headers["access-control-allow-headers"]


# ---------------------------------------------------------------- handler results


@pytest.mark.parametrize(("result", "status", "body", "content_type"), [
    ("plain text", 200, b"plain text", "application/json"),
    ({"a": Decimal("2")}, 200, b'{"a": 2}', "application/json"),
    ([1, 2], 200, b"[1, 2]", "application/json"),
    ({"statusCode": 204}, 204, b"", None),
    ({"statusCode": 201, "body": "made", "headers": {"content-type": "text/plain"}}, 201,
     b"made", "text/plain"),
    ({"statusCode": 200, "body": base64.b64encode(b"\x89PNG").decode(), "isBase64Encoded": True,
      "headers": {"content-type": "image/png"}}, 200, b"\x89PNG", "image/png"),
])
def test_results_follow_the_v2_response_rules(
    gw: Harness, result: Any, status: int, body: bytes, content_type: str | None
) -> None:
    gw.reply = lambda event, context: result
    response = gw.get(_protected(gw), gw.token())
    assert response.status_code == status
    assert response.get_data() == body
    assert response.headers.get("content-type") == content_type


def test_cookies_and_multi_value_headers_become_headers(gw: Harness) -> None:
    gw.reply = lambda event, context: {
        "statusCode": 302, "headers": {"Location": "https://example.com/x"},
        "multiValueHeaders": {"x-many": ["1", "2"]}, "cookies": ["a=1; Secure", "b=2"],
    }
    response = gw.get(_protected(gw), gw.token())
    assert response.status_code == 302
    assert response.headers["location"] == "https://example.com/x"
    assert response.headers.getlist("x-many") == ["1", "2"]
    assert response.headers.getlist("set-cookie") == ["a=1; Secure", "b=2"]


def _boom(event: dict[str, Any], context: Any) -> Any:
    raise RuntimeError("handler bug")


@pytest.mark.parametrize("reply", [
    _boom,
    lambda event, context: {"statusCode": 200, "body": {"not": "a string"}},
    lambda event, context: {"statusCode": "200"},
    lambda event, context: {"statusCode": 200, "body": "!!", "isBase64Encoded": True},
    lambda event, context: {"unserialisable": object()},
])
def test_handler_failures_are_api_gateway_500s(gw: Harness, reply: Any) -> None:
    gw.reply = reply
    response = gw.get(_protected(gw), gw.token())
    assert response.status_code == 500
    assert response.get_json() == {"message": "Internal Server Error"}


# ---------------------------------------------------------------- dev routes


def test_health(gw: Harness) -> None:
    response = gw.get("/local/health")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_dev_users_are_reset_and_get_a_12_hour_token(gw: Harness) -> None:
    response = gw.client.post("/local/users", json={"user_id": "dev-1", "quota": 7,
                                                      "plan": "free"})
    assert response.status_code == 200
    reply = response.get_json()
    assert gw.users == [("dev-1", 7, "free")]
    assert reply["user_id"] == "dev-1"
    assert abs(reply["expires_at"] - (time.time() + 12 * 3600)) < 60
    claims = gw.tokens.verify(f"Bearer {reply['token']}", gw.authorizer)
    assert claims["sub"] == "dev-1" and claims["exp"] == reply["expires_at"]
    assert gw.get(_protected(gw), reply["token"]).status_code == 200


def test_a_negative_ttl_makes_an_expired_token(gw: Harness) -> None:
    reply = gw.client.post("/local/users", json={"user_id": "dev-2", "quota": 0, "plan": "pro",
                                                  "ttl_seconds": -60}).get_json()
    assert gw.get(_protected(gw), reply["token"]).status_code == 401


@pytest.mark.parametrize("body", [
    b"not json", b"[]", b"{}",
    json.dumps({"user_id": "", "quota": 1, "plan": "pro"}).encode(),
    json.dumps({"user_id": "has space", "quota": 1, "plan": "pro"}).encode(),
    json.dumps({"user_id": "u", "quota": -1, "plan": "pro"}).encode(),
    json.dumps({"user_id": "u", "quota": 1.5, "plan": "pro"}).encode(),
    json.dumps({"user_id": "u", "quota": True, "plan": "pro"}).encode(),
    json.dumps({"user_id": "u", "quota": 1, "plan": "gold"}).encode(),
    json.dumps({"user_id": "u", "quota": 1, "plan": "pro", "ttl_seconds": "1"}).encode(),
    json.dumps({"user_id": "u", "quota": 1, "plan": "pro", "admin": True}).encode(),
])
def test_bad_dev_user_bodies_get_400(gw: Harness, body: bytes) -> None:
    response = gw.client.post("/local/users", data=body)
    assert response.status_code == 400
    assert set(response.get_json()) == {"message"}
    assert gw.users == []


def test_dev_users_say_so_when_the_core_cannot_reset_accounts(gw: Harness) -> None:
    gw.reset_error = SeedUnavailable("pixelbatch.seed is not importable")
    response = gw.client.post("/local/users", json={"user_id": "u", "quota": 1, "plan": "pro"})
    assert response.status_code == 501 and "pixelbatch.seed" in response.get_json()["message"]


def test_other_local_paths_are_404(gw: Harness) -> None:
    assert gw.get("/local/users").status_code == 404
    assert gw.get("/local/nothing").status_code == 404


def test_a_handler_running_past_its_timeout_is_a_500(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text(
        "Resources:\n"
        "  Slow:\n"
        "    Type: AWS::Serverless::Function\n"
        "    Properties:\n"
        "      CodeUri: slow/\n      Handler: app.handler\n      Timeout: 1\n"
        "      Events:\n"
        "        Get: {Type: HttpApi, Properties: {Method: GET, Path: /slow}}\n"
    )
    template = load_template(tmp_path / "template.yaml")

    def slow(event: dict[str, Any], context: Any) -> dict[str, Any]:
        time.sleep(1.1)
        return {"statusCode": 200}

    registry = HandlerRegistry(template, {"Slow": slow})
    tokens = DevTokens(SECRET, JwtAuthorizer("a", "iss", ("aud",), "$request.header.Authorization"))
    client = Client(Gateway(template, registry, tokens, lambda *args: None))
    response = client.get("/slow")
    assert response.status_code == 500
    assert response.get_json() == {"message": "Internal Server Error"}
