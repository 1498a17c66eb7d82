"""Schemathesis against the OpenAPI document the local stack serves: every route, valid and
invalid input (examples, coverage and fuzzing phases), real tasks for the taskId routes.

Each response must not be a 5xx, must have a documented status code, content type, headers and
body. Rate-limited (429) and quota replies are documented, so they pass like any other.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from pixelbatch.api.openapi import build_document
from schemathesis import BaseSchema, Case

from devstack.client import PixelBatchClient
from tests.fuzz.conftest import max_examples
from tests.fuzz.world import (
    FUZZ_PLAN,
    FUZZ_QUOTA,
    FuzzWorld,
    assert_no_web_image,
    catalog_features,
    upload_images,
)

pytestmark = pytest.mark.e2e

schema = schemathesis.pytest.from_fixture("api_schema")

TASK_ROUTES = (
    "GET /api/tasks/{taskId}",
    "GET /api/tasks/{taskId}/download-zip",
    "POST /api/tasks/{taskId}/retry-failed",
    "POST /api/tasks/{taskId}/cancel",
)
SCHEMA_ROUTE = "GET /api/openapi.json"
BODY_ROUTES = ("POST /api/tasks/batch", "POST /api/tasks", "POST /api/uploads")
SECONDS_PER_EXAMPLE = 3


def test_the_served_document_is_the_one_the_code_builds(fuzz_world: FuzzWorld) -> None:
    served = fuzz_world.api.session().get("/api/openapi.json")
    assert served.status_code == 200
    assert served.headers["Content-Type"].startswith("application/json")
    document: dict[str, Any] = served.json()
    assert document == build_document(document["servers"][0]["url"])


@pytest.mark.timeout(max(600, max_examples() * SECONDS_PER_EXAMPLE * 11))
@schema.parametrize()
def test_every_route_keeps_its_documented_contract(case: Case, fuzz_world: FuzzWorld) -> None:
    fuzz_world.steer(case)
    assert_no_web_image(case.body)
    response = case.call()
    fuzz_world.outcomes.record(case.operation.label, response.status_code)
    case.validate_response(response)


def test_the_fuzzer_reached_real_tasks_and_refused_input(fuzz_world: FuzzWorld) -> None:
    """What the run above touched: without it, a green fuzz run could mean nothing was tested."""
    statuses = fuzz_world.outcomes.statuses
    if not statuses:
        pytest.skip("runs after test_every_route_keeps_its_documented_contract")
    summary = fuzz_world.outcomes.summary()
    print(summary)  # shown with -rP, and with any failure below
    documented = {
        f"{method.upper()} {path}"
        for path, item in build_document()["paths"].items()
        for method in item
    }
    # Schemathesis leaves out the route its document came from; the test above covers it.
    assert set(statuses) == documented - {SCHEMA_ROUTE}, summary
    for route in TASK_ROUTES:
        assert any(code != 404 for code in statuses[route]), f"{route} never hit a task\n{summary}"
    for route in (*TASK_ROUTES, *BODY_ROUTES, "GET /api/tasks", "GET /api/quota"):
        assert any(400 <= code < 500 for code in statuses[route]), f"{route}: no 4xx\n{summary}"
    for route in ("POST /api/uploads", "GET /api/tasks", "GET /api/quota", "GET /api/features"):
        assert 200 in statuses[route], f"{route}: no 200\n{summary}"


# ---------------------------------------------------------------------- replies that need a set-up
# The fuzzer meets these only by chance; here they are made on purpose and checked the same way.


def _fresh_user(world: FuzzWorld) -> tuple[PixelBatchClient, dict[str, str]]:
    _, token = world.api.make_user(quota=FUZZ_QUOTA, plan=FUZZ_PLAN)
    return PixelBatchClient(world.api.base_url, token), {"Authorization": f"Bearer {token}"}


def test_a_rate_limited_create_keeps_its_documented_contract(
    api_schema: BaseSchema, fuzz_world: FuzzWorld
) -> None:
    client, auth = _fresh_user(fuzz_world)
    usable = [f for f in catalog_features() if f["is_enabled"] and not f["deleted_at"]
              and FUZZ_PLAN in f["allowed_plans"]]
    feature = min(usable, key=lambda f: f["rate_limit_policy"]["limit"])
    body: dict[str, Any] = {"feature_id": feature["feature_id"],
                            "input_images": upload_images(client, 1)}
    create = api_schema["/api/tasks/batch"]["POST"]
    statuses = []
    for _ in range(2 * feature["rate_limit_policy"]["limit"] + 2):  # a window may end midway
        case = create.Case(body=body, media_type="application/json")
        response = case.call(headers=auth)
        case.validate_response(response, headers=auth)
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {200}, statuses


def test_cancelling_a_running_batch_keeps_its_documented_contract(
    api_schema: BaseSchema, fuzz_world: FuzzWorld
) -> None:
    client, auth = _fresh_user(fuzz_world)
    images = upload_images(client, 10)
    cancel = api_schema["/api/tasks/{taskId}/cancel"]["POST"]
    statuses = []
    for _ in range(3):  # a batch that finished before the cancel arrived gets a 409; try again
        case = cancel.Case(path_parameters={"taskId": client.create_batch("basic_clean", images)})
        response = case.call(headers=auth)
        case.validate_response(response, headers=auth)
        statuses.append(response.status_code)
        if response.status_code == 200:
            break
    assert statuses[-1] == 200 and set(statuses[:-1]) <= {409}, statuses


NOT_UTF8 = b'{"feature_id": "\xff\xfe"}'


@pytest.mark.parametrize(
    "route",
    [
        "/api/tasks/batch",
        "/api/tasks",
        "/api/uploads",
        "/api/tasks/{taskId}/retry-failed",
        "/api/tasks/{taskId}/cancel",
    ],
)
def test_a_body_that_is_not_utf8_is_not_a_server_error(fuzz_world: FuzzWorld, route: str) -> None:
    """Routes that read a body refuse it with 400/4001; retry and cancel ignore their body."""
    path = route.replace("{taskId}", fuzz_world.own_tasks["success"])
    response = fuzz_world.session().post(
        path, data=NOT_UTF8, headers={"Content-Type": "application/json"}
    )
    assert response.status_code < 500, response.text
    if "{taskId}" not in route:
        assert (response.status_code, response.json()["errorCode"]) == (400, 4001)


@pytest.mark.parametrize(
    ("feature", "input_data"),
    [("watermark", {}), ("watermark", {"opacity": 1}), ("basic_clean", {"brightness": 10.0})],
)
@pytest.mark.parametrize("single", [False, True], ids=["batch", "single"])
def test_a_task_with_a_non_integer_parameter_is_created(
    fuzz_world: FuzzWorld, feature: str, input_data: dict[str, Any], single: bool
) -> None:
    client, _ = _fresh_user(fuzz_world)  # nothing else can refuse it: no rate limit spent yet
    (image,) = upload_images(client, 1)
    body: dict[str, Any] = {"feature_id": feature, "input_data": input_data}
    if single:
        body["input_image"] = image
    else:
        body["input_images"] = [image]
    response = client.request("POST", "/api/tasks" if single else "/api/tasks/batch", json=body)
    assert response.status_code == 200, response.text
