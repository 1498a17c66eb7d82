"""The OpenAPI document against template.yaml, the contract and the replies the code builds, and
the docs Lambda that serves it."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from pixelbatch import errors
from pixelbatch.api import http, idempotency, views, web
from pixelbatch.api.openapi import build_document
from pixelbatch.contract import BatchBody, SingleBody, UploadsBody, parse_body
from pixelbatch.models import (
    Feature,
    Item,
    ItemStatus,
    LedgerEntry,
    RateLimitPolicy,
    Task,
    TaskStatus,
)
from pixelbatch.services.account import Upload
from pixelbatch.services.tasks import TaskDetails

# The docs Lambda publishes no metric of its own; Powertools warns about that on every call.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
DOCS_APP = ROOT / "functions" / "api_docs" / "app.py"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
NOW = "2025-05-01T08:30:00.123456Z"
IMAGE = "s3://uploads-bucket/uploads/user-1/abc/photo.jpg"

# The product card's messages (API.md): each must be shown to readers of the document.
PRODUCT_MESSAGES = (
    "input_images必须是数组", "至少需要上传1张图片", "批量处理最多支持50张图片", "功能不存在",
    "功能已禁用", "无权使用该功能", "请求过于频繁，请稍后再试", "配额不足，请充值", "任务不存在",
    "无权访问该任务", "该任务不是批量任务", "没有可下载的文件", "没有失败的子任务需要重试",
)


# ---------------------------------------------------------------------- helpers


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that reads any CloudFormation short tag (!Ref, !GetAtt, ...) as its value."""


def _any_tag(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]


_CfnLoader.add_multi_constructor("!", _any_tag)


@dataclass(frozen=True)
class TemplateRoute:
    method: str
    path: str
    public: bool


def template_routes() -> list[TemplateRoute]:
    template = yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_CfnLoader)
    routes = []
    for resource in template["Resources"].values():
        for event in (resource.get("Properties", {}).get("Events") or {}).values():
            if event.get("Type") != "HttpApi":
                continue
            props = event["Properties"]
            authorizer = (props.get("Auth") or {}).get("Authorizer")
            public = authorizer == "NONE"
            routes.append(TemplateRoute(props["Method"].lower(), props["Path"], public))
    return routes


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


def validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for `schema` whose `#/components/...` refs resolve as in the document."""
    return Draft202012Validator({**schema, "components": document["components"]})


def component(document: dict[str, Any], name: str) -> Draft202012Validator:
    return validator(document, {"$ref": f"#/components/schemas/{name}"})


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def response(document: dict[str, Any], method: str, path: str, status: str) -> dict[str, Any]:
    return resolve(document, document["paths"][path][method]["responses"][status])


def reply_validator(
    document: dict[str, Any], method: str, path: str, status: str
) -> Draft202012Validator:
    content = response(document, method, path, status)["content"]
    return validator(document, content["application/json"]["schema"])


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document()


# ---------------------------------------------------------------------- the document


def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"].startswith("3.1.")
    assert [server["url"] for server in document["servers"]] == ["/"]


def test_every_template_route_and_no_other(document: dict[str, Any]) -> None:
    expected = {(route.method, route.path) for route in template_routes()}
    documented = {(method, path) for method, path, _ in operations(document)}
    assert expected, "no HttpApi route found in template.yaml"
    assert documented == expected


def test_docs_routes_are_public_and_all_others_need_the_bearer_token(
    document: dict[str, Any],
) -> None:
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    for route in template_routes():
        operation = document["paths"][route.path][route.method]
        security = operation.get("security", document.get("security"))
        if route.public:
            assert security == [], route
            assert "401" not in operation["responses"], route
        else:
            assert security == [{"bearerAuth": []}], route
            assert "401" in operation["responses"], route


def test_operation_ids_are_unique(document: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))


def test_every_example_matches_its_schema(document: dict[str, Any]) -> None:
    checked = 0
    for method, path, operation in operations(document):
        bodies = [resolve(document, r) for r in operation["responses"].values()]
        if "requestBody" in operation:
            bodies.append(operation["requestBody"])
        for body in bodies:
            for media in body.get("content", {}).values():
                check = validator(document, media["schema"])
                for name, example in media.get("examples", {}).items():
                    errors_found = [e.message for e in check.iter_errors(example["value"])]
                    assert not errors_found, (method, path, name, errors_found)
                    checked += 1
    assert checked > 50


def test_the_product_cards_messages_are_all_shown(document: dict[str, Any]) -> None:
    text = json.dumps(document, ensure_ascii=False)
    missing = [message for message in PRODUCT_MESSAGES if f'"{message}"' not in text]
    assert not missing


def test_money_moving_routes_take_an_idempotency_key(document: dict[str, Any]) -> None:
    takes_key = {
        (method, path)
        for method, path, operation in operations(document)
        for parameter in operation.get("parameters", [])
        if resolve(document, parameter)["name"] == "Idempotency-Key"
    }
    assert takes_key == {
        ("post", "/api/tasks/batch"),
        ("post", "/api/tasks"),
        ("post", "/api/tasks/{taskId}/retry-failed"),
        ("post", "/api/tasks/{taskId}/cancel"),
    }
    key = document["components"]["parameters"]["IdempotencyKey"]
    assert key["schema"]["pattern"] == idempotency._KEY_FORMAT.pattern


@pytest.mark.parametrize("path", ["/api/tasks", "/api/quota"])
def test_paged_routes_take_the_limit_and_cursor_the_handlers_read(
    document: dict[str, Any], path: str
) -> None:
    operation = document["paths"][path]["get"]
    resolved = (resolve(document, raw) for raw in operation.get("parameters", []))
    parameters = {parameter["name"]: parameter for parameter in resolved}
    assert set(parameters) == {"limit", "cursor"}
    assert all(p["in"] == "query" and not p["required"] for p in parameters.values())
    limit = parameters["limit"]["schema"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 100, 20)
    page = response(document, "get", path, "200")["content"]["application/json"]["schema"]
    data = resolve(document, resolve(document, page)["properties"]["data"])
    assert "next_cursor" in data["required"]
    examples = response(document, "get", path, "400")["content"]["application/json"]["examples"]
    messages = {example["value"]["message"] for example in examples.values()}
    assert messages == {"limit必须是1到100之间的整数", "cursor无效"}


def test_rate_limited_replies_carry_retry_after(document: dict[str, Any]) -> None:
    limited = [(m, p, o) for m, p, o in operations(document) if "429" in o["responses"]]
    assert {p for _, p, _ in limited} == {"/api/tasks/batch", "/api/tasks"}
    for method, path, _ in limited:
        assert "Retry-After" in response(document, method, path, "429")["headers"]


# ---------------------------------------------------------------------- requests vs the contract


def _batch(images: int, **extra: Any) -> dict[str, Any]:
    return {"feature_id": "basic_clean", "input_images": [IMAGE] * images, **extra}


@pytest.mark.parametrize(("images", "valid"), [(0, False), (1, True), (50, True), (51, False)])
def test_batch_request_schema_bounds_the_image_count(
    document: dict[str, Any], images: int, valid: bool
) -> None:
    assert component(document, "BatchTaskRequest").is_valid(_batch(images)) is valid


BATCH_BODIES: list[tuple[str, Any]] = [
    ("one image", _batch(1)),
    ("fifty images", _batch(50)),
    ("no images", _batch(0)),
    ("fifty-one images", _batch(51)),
    ("images not an array", {"feature_id": "basic_clean", "input_images": IMAGE}),
    ("images missing", {"feature_id": "basic_clean"}),
    ("blank image", {"feature_id": "basic_clean", "input_images": ["  "]}),
    ("image too long", {"feature_id": "f", "input_images": ["s3://b/" + "k" * 2042]}),
    ("image at the length limit", {"feature_id": "f", "input_images": ["s3://b/" + "k" * 2041]}),
    ("image not a string", {"feature_id": "basic_clean", "input_images": [7]}),
    ("feature_id blank", {**_batch(1), "feature_id": "   "}),
    ("feature_id missing", {"input_images": [IMAGE]}),
    ("feature_id too long", {**_batch(1), "feature_id": "f" * 65}),
    ("feature_id at the limit", {**_batch(1), "feature_id": "f" * 64}),
    ("input_data null", _batch(1, input_data=None)),
    ("input_data object", _batch(1, input_data={"brightness": 10})),
    ("input_data not an object", _batch(1, input_data=[1])),
    ("unknown key ignored", _batch(1, note="hi")),
    ("batch_items sent", _batch(1, batch_items=[])),
    ("status sent", _batch(1, status="success")),
    ("quota_cost sent", _batch(1, quota_cost=0)),
    ("not an object", [IMAGE]),
]


def _contract_accepts(model: type[BatchBody | SingleBody | UploadsBody], body: Any) -> bool:
    try:
        parse_body(model, json.dumps(body))
    except errors.InvalidRequest:
        return False
    return True


@pytest.mark.parametrize(("case", "body"), BATCH_BODIES, ids=[case for case, _ in BATCH_BODIES])
def test_batch_request_schema_agrees_with_the_contract(
    document: dict[str, Any], case: str, body: Any
) -> None:
    schema_says = component(document, "BatchTaskRequest").is_valid(body)
    assert schema_says is _contract_accepts(BatchBody, body), case


SINGLE_BODIES: list[tuple[str, Any]] = [
    ("valid", {"feature_id": "basic_clean", "input_image": IMAGE}),
    ("image missing", {"feature_id": "basic_clean"}),
    ("image blank", {"feature_id": "basic_clean", "input_image": ""}),
    ("is_batch sent", {"feature_id": "basic_clean", "input_image": IMAGE, "is_batch": True}),
]


@pytest.mark.parametrize(("case", "body"), SINGLE_BODIES, ids=[case for case, _ in SINGLE_BODIES])
def test_single_request_schema_agrees_with_the_contract(
    document: dict[str, Any], case: str, body: Any
) -> None:
    schema_says = component(document, "SingleTaskRequest").is_valid(body)
    assert schema_says is _contract_accepts(SingleBody, body), case


def _files(count: int, **file: Any) -> dict[str, Any]:
    one = {"filename": "a.jpg", "content_type": "image/jpeg", "size": 10, **file}
    return {"files": [one] * count}


UPLOAD_BODIES: list[tuple[str, Any]] = [
    ("one file", _files(1)),
    ("fifty files", _files(50)),
    ("no files", _files(0)),
    ("fifty-one files", _files(51)),
    ("empty filename", _files(1, filename="")),
    ("filename at the limit", _files(1, filename="a" * 200)),
    ("filename too long", _files(1, filename="a" * 201)),
    ("zero size", _files(1, size=0)),
    ("id sent", {**_files(1), "id": "x"}),
]


@pytest.mark.parametrize(("case", "body"), UPLOAD_BODIES, ids=[case for case, _ in UPLOAD_BODIES])
def test_uploads_request_schema_agrees_with_the_contract(
    document: dict[str, Any], case: str, body: Any
) -> None:
    schema_says = component(document, "UploadsRequest").is_valid(body)
    assert schema_says is _contract_accepts(UploadsBody, body), case


# ---------------------------------------------------------------------- replies vs the code


def _task(*, is_batch: bool = True, **changes: Any) -> Task:
    values: dict[str, Any] = {
        "task_id": uuid.uuid4().hex, "owner_id": "user-1", "feature_id": "basic_clean",
        "status": TaskStatus.PARTIAL_SUCCESS, "is_batch": is_batch, "batch_total": 2,
        "batch_success": 1, "batch_failed": 1, "batch_cancelled": 0, "quota_cost": 1,
        "round": 1, "input_data": {"brightness": 10}, "steps": [], "created_at": NOW,
        "updated_at": NOW,
    }
    return Task(**{**values, **changes})


def _items(task: Task) -> list[Item]:
    done = Item(task.task_id, 0, IMAGE, ItemStatus.SUCCESS, 1, NOW, output_key="out/0.jpg",
                output_ext="jpg")
    failed = Item(task.task_id, 1, IMAGE, ItemStatus.FAILED, 2, NOW, error_code="timeout",
                  error_message="下载图片超时", retryable=True)
    pending = Item(task.task_id, 2, IMAGE, ItemStatus.PENDING, 1, NOW)
    return [done, failed, pending]


def _data_of(document: dict[str, Any], method: str, path: str, data: Any) -> list[str]:
    check = reply_validator(document, method, path, "200")
    return [error.message for error in check.iter_errors({"success": True, "data": data})]


def test_created_replies_match_what_the_views_build(document: dict[str, Any]) -> None:
    batch, single = _task(), _task(is_batch=False, batch_total=1, status=TaskStatus.PENDING)
    assert not _data_of(document, "post", "/api/tasks/batch", views.created(batch))
    assert not _data_of(document, "post", "/api/tasks", views.created(single))


@pytest.mark.parametrize("is_batch", [True, False])
def test_task_details_match_what_the_views_build(document: dict[str, Any], is_batch: bool) -> None:
    task = _task(is_batch=is_batch, error_message=None if is_batch else "处理失败，请重试")
    items = _items(task)[: 3 if is_batch else 1]
    details = TaskDetails(task, items, {0: "https://signed.example/0.jpg"})
    assert not _data_of(document, "get", "/api/tasks/{taskId}", views.task_details(details))
    empty = TaskDetails(_task(is_batch=is_batch), [], {})
    assert not _data_of(document, "get", "/api/tasks/{taskId}", views.task_details(empty))


def test_task_page_matches_what_the_handler_builds(document: dict[str, Any]) -> None:
    page = {"tasks": [views.task_summary(_task())], "next_cursor": None}
    assert not _data_of(document, "get", "/api/tasks", page)
    assert not _data_of(document, "get", "/api/tasks", {**page, "next_cursor": "eyJ9"})


def test_account_replies_match_what_the_views_build(document: dict[str, Any]) -> None:
    entries = [
        LedgerEntry("charge#t#r1", "charge", 2, NOW, task_id="t", items=[0, 1]),
        LedgerEntry("refund#t#r1#1", "refund", 1, NOW, task_id="t", items=[1]),
        LedgerEntry(f"grant#{NOW}", "grant", 100, NOW),
    ]
    ledger = [views.ledger_entry(entry) for entry in entries]
    quota = {"balance": 5, "plan": "free", "ledger": ledger, "next_cursor": None}
    assert not _data_of(document, "get", "/api/quota", quota)
    assert not _data_of(document, "get", "/api/quota", {**quota, "next_cursor": "eyJ9"})
    assert _data_of(document, "get", "/api/quota", {k: v for k, v in quota.items()
                                                    if k != "next_cursor"})
    feature = Feature("basic_clean", "Basic", "", True, None, 1, RateLimitPolicy(30, 60), "pl",
                      ("free",), {"type": "object"})
    assert not _data_of(document, "get", "/api/features", {"features": [views.feature(feature)]})
    upload = Upload("https://signed.example/put", IMAGE, {"Content-Type": "image/png"}, NOW)
    assert not _data_of(document, "post", "/api/uploads", {"uploads": [views.upload(upload)]})


DOMAIN_ERRORS: list[tuple[errors.DomainError, str, str]] = [
    (errors.ImagesNotArray(), "post", "/api/tasks/batch"),
    (errors.TooManyImages(), "post", "/api/tasks/batch"),
    (errors.InvalidParameters("input_data参数无效: x"), "post", "/api/tasks/batch"),
    (errors.FeatureDisabled(), "post", "/api/tasks/batch"),
    (errors.QuotaInsufficient(), "post", "/api/tasks/batch"),
    (errors.FeatureNotFound(), "post", "/api/tasks/batch"),
    (errors.ConcurrentUpdate(), "post", "/api/tasks/batch"),
    (errors.RateLimited(reset_at=2_000_000_000, remaining=0), "post", "/api/tasks/batch"),
    (errors.StartFailed(), "post", "/api/tasks/batch"),
    (errors.DomainError(), "get", "/api/quota"),
    (errors.NotTaskOwner(), "get", "/api/tasks/{taskId}/download-zip"),
    (errors.TaskNotFound(), "get", "/api/tasks/{taskId}/download-zip"),
    (errors.NothingToDownload(), "get", "/api/tasks/{taskId}/download-zip"),
    (errors.NoFailedItems(), "post", "/api/tasks/{taskId}/retry-failed"),
    (errors.NotABatchTask(), "post", "/api/tasks/{taskId}/retry-failed"),
    (errors.QuotaInsufficient(), "post", "/api/tasks/{taskId}/retry-failed"),
    (errors.TaskCancelled(), "post", "/api/tasks/{taskId}/retry-failed"),
    (errors.StartFailed(), "post", "/api/tasks/{taskId}/retry-failed"),
    (errors.TaskFinished(), "post", "/api/tasks/{taskId}/cancel"),
    (errors.IdempotencyKeyReused(), "post", "/api/tasks/{taskId}/cancel"),
    (errors.RequestInProgress(), "post", "/api/tasks/{taskId}/cancel"),
    (errors.NotTaskOwner(), "post", "/api/tasks/{taskId}/cancel"),
    (errors.InvalidCursor(), "get", "/api/tasks"),
    (errors.InvalidQuery("limit必须是1到100之间的整数"), "get", "/api/quota"),
    (errors.InvalidBody("files必须是数组"), "post", "/api/uploads"),
    (errors.UnsupportedFileType("files[0]: 不支持的文件类型 text/plain"), "post", "/api/uploads"),
]


@pytest.mark.parametrize(
    ("error", "method", "path"), DOMAIN_ERRORS, ids=[type(e).__name__ for e, _, _ in DOMAIN_ERRORS]
)
def test_error_replies_match_what_the_resolver_builds(
    document: dict[str, Any], error: errors.DomainError, method: str, path: str
) -> None:
    reply = http.error_reply(error)
    status = str(reply.status_code)
    body = json.loads(str(reply.body))
    check = reply_validator(document, method, path, status)
    assert not [problem.message for problem in check.iter_errors(body)]
    assert body["error"] == error.key
    examples = response(document, method, path, status)["content"]["application/json"]
    assert error.key in {example["value"].get("error") for example in examples["examples"].values()}
    for header in response(document, method, path, status).get("headers", {}):
        assert header in (reply.headers or {})


def test_redirect_matches_the_download_reply(document: dict[str, Any]) -> None:
    reply = http.redirect("https://signed.example/batch.zip")
    documented = response(document, "get", "/api/tasks/{taskId}/download-zip", "302")
    assert reply.status_code == 302
    assert set(documented["headers"]) <= set(reply.headers or {})
    assert "content" not in documented


# ---------------------------------------------------------------------- the docs Lambda


@dataclass
class _Context:
    function_name: str = "DocsApiFunction"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:DocsApiFunction"
    memory_limit_in_mb: int = 256
    aws_request_id: str = "11111111-2222-3333-4444-555555555555"
    log_group_name: str = "/aws/lambda/DocsApiFunction"
    log_stream_name: str = "stream"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


def http_event(path: str, *, stage: str = "$default") -> dict[str, Any]:
    raw_path = path if stage == "$default" else f"/{stage}{path}"
    return {
        "version": "2.0",
        "routeKey": f"GET {path}",
        "rawPath": raw_path,
        "rawQueryString": "",
        "headers": {"host": "localhost", "accept": "*/*"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {"method": "GET", "path": raw_path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "pytest"},
            "requestId": "req-1",
            "routeKey": f"GET {path}",
            "stage": stage,
            "time": "01/May/2025:08:30:00 +0000",
            "timeEpoch": 1746088200000,
        },
        "isBase64Encoded": False,
    }


@pytest.fixture
def docs_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "PixelBatchTest")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "pixelbatch")
    for name in ("ACCOUNTS", "FEATURES", "PIPELINES", "TASKS", "LEDGER", "RATE_LIMIT",
                 "IDEMPOTENCY"):
        monkeypatch.setenv(f"{name}_TABLE", name.lower())
    monkeypatch.setenv("UPLOADS_BUCKET", "uploads-bucket")
    monkeypatch.setenv("OUTPUTS_BUCKET", "outputs-bucket")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("CONSOLE_SIGN_IN", "local")
    name = f"_test_api_docs_app_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, DOCS_APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


def _header(reply: dict[str, Any], name: str) -> str:
    headers = {key.lower(): value for key, value in (reply.get("headers") or {}).items()}
    return str(headers.get(name.lower(), ""))


def test_openapi_json_is_served_without_a_token(docs_app: ModuleType) -> None:
    reply = docs_app.lambda_handler(http_event("/api/openapi.json"), _Context())
    assert reply["statusCode"] == 200
    assert _header(reply, "content-type").startswith("application/json")
    assert json.loads(reply["body"]) == build_document()


def test_openapi_json_behind_a_named_stage_points_at_the_stage(docs_app: ModuleType) -> None:
    reply = docs_app.lambda_handler(http_event("/api/openapi.json", stage="dev"), _Context())
    assert reply["statusCode"] == 200
    assert json.loads(reply["body"])["servers"][0]["url"] == "/dev"


def test_docs_page_is_swagger_ui_from_this_origin(docs_app: ModuleType) -> None:
    reply = docs_app.lambda_handler(http_event("/api/docs"), _Context())
    page = reply["body"]
    assert reply["statusCode"] == 200
    assert _header(reply, "content-type").startswith("text/html")
    scripts = re.findall(r"<script\b[^>]*>", page)
    assert scripts == ['<script src="docs/swagger-ui-bundle.min.js">',
                       '<script src="docs/swagger-init.js">']
    assert not re.search(r"https?://", page)
    policy = _header(reply, "content-security-policy")
    assert "script-src 'self';" in policy and "connect-src 'self';" in policy
    assert "unsafe-eval" not in policy


def test_swagger_ui_is_the_copy_powertools_ships(docs_app: ModuleType) -> None:
    reply = docs_app.lambda_handler(
        http_event("/api/docs/swagger-ui-bundle.min.js"), _Context())
    shipped = (web.SWAGGER_UI_DIR / "swagger-ui-bundle.min.js").read_text(encoding="utf-8")
    assert reply["statusCode"] == 200
    assert _header(reply, "content-type").startswith("text/javascript")
    assert reply["body"] == shipped
    init = docs_app.lambda_handler(http_event("/api/docs/swagger-init.js"), _Context())
    assert 'url: "openapi.json"' in init["body"]


def test_no_idempotency_key_is_offered_for_replay(document: dict[str, Any]) -> None:
    key = document["components"]["parameters"]["IdempotencyKey"]
    assert "example" not in key and "examples" not in key
    assert not {"example", "examples", "default"} & set(key["schema"])


@pytest.mark.parametrize("path", ["/api/docs/nope.js", "/api/docs/..%2Fapp.py",
                                  "/console/app.py", "/console/..%2F..%2Fapp.py"])
def test_only_the_shipped_files_are_served(docs_app: ModuleType, path: str) -> None:
    reply = docs_app.lambda_handler(http_event(path), _Context())
    assert reply["statusCode"] == 404
    assert json.loads(reply["body"])["error"] == "not_found"


def test_console_page_and_modules_share_a_strict_policy(docs_app: ModuleType) -> None:
    page = docs_app.lambda_handler(http_event("/"), _Context())
    assert page["statusCode"] == 200
    assert _header(page, "content-type").startswith("text/html")
    assert not re.search(r"<script>|<style>|\son\w+=|https?://", page["body"])
    policy = _header(page, "content-security-policy")
    assert policy.startswith("default-src 'none'; script-src 'self'; style-src 'self';")
    assert "unsafe" not in policy
    assert "connect-src 'self' https://" in policy  # the buckets' presigned URL origin
    for module in re.findall(r'src="(console/[^"]+)"', page["body"]):
        served = docs_app.lambda_handler(http_event("/" + module), _Context())
        assert served["statusCode"] == 200, module
        assert _header(served, "content-type").startswith("text/javascript")


def test_console_config_says_how_to_sign_in(docs_app: ModuleType) -> None:
    reply = docs_app.lambda_handler(http_event("/console/config.json"), _Context())
    assert json.loads(reply["body"]) == {"auth": "local", "users_url": "/local/users"}
    hosted = web.console_config({
        "CONSOLE_SIGN_IN": "https://px.auth.eu-west-1.amazoncognito.com",
        "CONSOLE_CLIENT_ID": "abc123",
    })
    assert hosted["auth"] == "cognito" and hosted["client_id"] == "abc123"
    assert hosted["authorize_url"] == "https://px.auth.eu-west-1.amazoncognito.com/oauth2/authorize"
    assert web.config_origins(hosted) == ["https://px.auth.eu-west-1.amazoncognito.com"]


def test_unknown_docs_path_gets_the_contracts_404(docs_app: ModuleType) -> None:
    reply = docs_app.lambda_handler(http_event("/api/nope"), _Context())
    assert reply["statusCode"] == 404
    assert json.loads(reply["body"])["errorCode"] == errors.NotFound.error_code


def test_static_files_are_documented_with_the_types_they_are_served_as(
    document: dict[str, Any],
) -> None:
    served = {kind.split(";")[0] for kind in web.CONTENT_TYPES.values()}
    for path in ("/api/docs/{name}", "/console/{name}"):
        documented = set(response(document, "get", path, "200")["content"])
        assert served <= documented, path


def test_console_files_fetch_nothing_from_elsewhere() -> None:
    console = web.load_assets(DOCS_APP.parent / "console")
    assert {"index.html", "main.js", "api.js", "console.css"} <= set(console)
    for name, asset in console.items():
        assert not re.search(r"https?://|//cdn|@import", asset.body), name
    modules = [asset.body for name, asset in console.items() if name.endswith(".js")]
    assert sum("fetch(" in body or "XMLHttpRequest" in body for body in modules) == 1
