"""Every failure reply carries a stable `error` key that names its cause, derived from the domain
error's type in api.http, and every key is listed in the OpenAPI document."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pixelbatch import errors
from pixelbatch.api import http
from pixelbatch.api.openapi import build_document, error_keys
from pixelbatch.contract import BatchBody, UploadsBody, parse_body

ALL_TYPES = list(errors.error_types())
ENVELOPE_TYPES = [kind for kind in ALL_TYPES if kind is not errors.Unauthorized]


def _instance(kind: type[errors.DomainError]) -> errors.DomainError:
    if kind is errors.RateLimited:
        return errors.RateLimited(reset_at=2_000_000_000)
    return kind()


def _body(kind: type[errors.DomainError]) -> dict[str, Any]:
    reply = http.error_reply(_instance(kind))
    body: dict[str, Any] = json.loads(str(reply.body))
    return body


def test_keys_are_unique_snake_case() -> None:
    keys = [kind.key for kind in ALL_TYPES]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", key) for key in keys)


@pytest.mark.parametrize("kind", ENVELOPE_TYPES, ids=[kind.__name__ for kind in ENVELOPE_TYPES])
def test_every_reply_keeps_the_envelope_and_adds_its_key(kind: type[errors.DomainError]) -> None:
    # Given a domain error of this type, When api.http turns it into a reply
    body = _body(kind)
    # Then errorCode and message are the contract's, and error is the type's own key
    assert body["success"] is False
    assert body["errorCode"] == kind.error_code
    assert body["message"] == kind.default_message
    assert body["error"] == kind.key


def test_the_overloaded_4001_and_4003_codes_are_told_apart_by_key() -> None:
    for code, expected in (
        (4001, {"too_many_images", "no_images", "invalid_body", "server_owned_field",
                "not_a_batch", "nothing_to_download", "nothing_to_retry", "invalid_parameters"}),
        (4003, {"feature_disabled", "plan_not_allowed", "forbidden_task"}),
        (4004, {"task_not_found", "feature_not_found"}),
    ):
        assert expected <= {kind.key for kind in error_keys(code)}


BODIES: list[tuple[str, Any, str]] = [
    ("not JSON", "{", "invalid_body"),
    ("not an object", [1], "invalid_body"),
    ("images not an array", {"feature_id": "f", "input_images": "x"}, "images_not_array"),
    ("no images", {"feature_id": "f", "input_images": []}, "no_images"),
    ("51 images", {"feature_id": "f", "input_images": ["s3://b/k"] * 51}, "too_many_images"),
    ("batch_items sent", {"feature_id": "f", "input_images": ["a"], "batch_items": []},
     "server_owned_field"),
    ("feature_id blank", {"feature_id": " ", "input_images": ["a"]}, "invalid_body"),
    ("input_data a list", {"feature_id": "f", "input_images": ["a"], "input_data": [1]},
     "invalid_body"),
]


@pytest.mark.parametrize(("case", "body", "key"), BODIES, ids=[case for case, _, _ in BODIES])
def test_a_refused_batch_body_names_its_cause(case: str, body: Any, key: str) -> None:
    raw = body if isinstance(body, str) else json.dumps(body)
    with pytest.raises(errors.InvalidRequest) as refused:
        parse_body(BatchBody, raw)
    assert refused.value.key == key, case
    assert json.loads(str(http.error_reply(refused.value).body))["error"] == key


def test_the_product_card_messages_stay_with_their_keys() -> None:
    with pytest.raises(errors.TooManyImages) as refused:
        parse_body(UploadsBody, json.dumps({"files": [{"filename": "a"}] * 51}))
    assert refused.value.message == "批量处理最多支持50张图片"
    with pytest.raises(errors.NoImages) as refused_empty:
        parse_body(BatchBody, json.dumps({"feature_id": "f", "input_images": []}))
    assert refused_empty.value.message == "至少需要上传1张图片"


def test_every_key_is_listed_in_the_document() -> None:
    document = build_document()
    schemas = document["components"]["schemas"]
    table = document["info"]["description"]
    for kind in ENVELOPE_TYPES:
        error_schema = schemas[f"Error{kind.error_code}"]["properties"]["error"]
        assert kind.key in error_schema["examples"], kind
        assert f"`{kind.key}`" in error_schema["description"], kind
        assert f"| `{kind.key}` | {kind.http_status} | {kind.error_code} |" in table, kind


def test_every_failure_example_carries_a_key_of_its_code() -> None:
    document = build_document()
    by_key = {kind.key: kind for kind in ALL_TYPES}
    seen = 0
    for item in document["paths"].values():
        for operation in item.values():
            for reply in operation["responses"].values():
                for media in reply.get("content", {}).values():
                    for example in media.get("examples", {}).values():
                        value = example["value"]
                        if value.get("success") is not False:
                            continue
                        assert by_key[value["error"]].error_code == value["errorCode"], value
                        seen += 1
    assert seen > 40
