"""Request bodies of the API contract, with its exact messages. Anything the server owns is
refused here, before any charge."""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

from pixelbatch.errors import (
    ImagesNotArray,
    InvalidBody,
    InvalidRequest,
    NoImages,
    NonFiniteNumber,
    ServerOwnedField,
    TooManyImages,
)

MAX_BATCH_IMAGES = 50
MAX_URL_LENGTH = 2048
MAX_INPUT_DATA_BYTES = 4096
NON_FINITE_MESSAGE = "请求体不能包含NaN、Infinity等非有限数值"

# Fields only the server may set; a client that sends one is refused (400) and charged nothing.
SERVER_OWNED_FIELDS = (
    "batch_items", "status", "batch_total", "batch_success", "batch_failed", "batch_cancelled",
    "quota_cost", "id", "task_id", "userId", "user_id", "owner_id", "is_batch", "createdAt",
    "created_at", "updatedAt", "updated_at", "round", "zip_key", "output_url", "charges",
)

UPLOAD_CONTENT_TYPES = (
    "image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp", "image/tiff",
)


def _fail(message: str, error: type[InvalidRequest] = InvalidBody) -> NoReturn:
    """Refuse the body with the error type that names the cause. Validators raise it directly:
    pydantic lets exceptions other than ValueError and AssertionError through unchanged."""
    raise error(message)


def _as_object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        _fail("请求体必须是JSON对象")
    owned = [name for name in SERVER_OWNED_FIELDS if name in data]
    if owned:
        _fail(f"{owned[0]}由服务端维护，不能由客户端提交", ServerOwnedField)
    return data


def _check_feature_id(body: dict[str, Any]) -> None:
    feature_id = body.get("feature_id")
    if not isinstance(feature_id, str) or not feature_id.strip():
        _fail("feature_id不能为空")
    if len(feature_id) > 64:
        _fail("feature_id无效")


def _check_input_data(body: dict[str, Any]) -> None:
    data = body.get("input_data", {})
    if data is None:
        body["input_data"] = {}
        return
    if not isinstance(data, dict):
        _fail("input_data必须是对象")
    if len(json.dumps(data, ensure_ascii=False).encode()) > MAX_INPUT_DATA_BYTES:
        _fail("input_data过大")


def _check_count(images: list[Any]) -> None:
    if not images:
        _fail(NoImages.default_message, NoImages)
    if len(images) > MAX_BATCH_IMAGES:
        _fail(TooManyImages.default_message, TooManyImages)


def _check_image_url(value: Any, label: str) -> None:
    if not isinstance(value, str) or not value.strip():
        _fail(f"{label}必须是非空字符串")
    if len(value) > MAX_URL_LENGTH:
        _fail(f"{label}过长")


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class BatchBody(_Body):
    feature_id: str
    input_images: list[str]
    input_data: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _contract(cls, data: Any) -> Any:
        body = dict(_as_object(data))
        images = body.get("input_images")
        if not isinstance(images, list):
            _fail(ImagesNotArray.default_message, ImagesNotArray)
        _check_count(images)
        _check_feature_id(body)
        for position, url in enumerate(images):
            _check_image_url(url, f"input_images[{position}]")
        _check_input_data(body)
        return body


class SingleBody(_Body):
    feature_id: str
    input_image: str
    input_data: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _contract(cls, data: Any) -> Any:
        body = dict(_as_object(data))
        _check_feature_id(body)
        _check_image_url(body.get("input_image"), "input_image")
        _check_input_data(body)
        return body

    @property
    def input_images(self) -> list[str]:
        return [self.input_image]


class UploadFile(_Body):
    filename: str = Field(min_length=1, max_length=200)
    content_type: str
    size: StrictInt = Field(gt=0)


class UploadsBody(_Body):
    files: list[UploadFile] = Field(min_length=1, max_length=MAX_BATCH_IMAGES)

    @model_validator(mode="before")
    @classmethod
    def _contract(cls, data: Any) -> Any:
        body = _as_object(data)
        files = body.get("files")
        if not isinstance(files, list):
            _fail("files必须是数组")
        _check_count(files)
        return body


class WebhookBody(_Body):
    url: str

    @model_validator(mode="before")
    @classmethod
    def _contract(cls, data: Any) -> Any:
        body = _as_object(data)
        url = body.get("url")
        if not isinstance(url, str) or not url.strip():
            _fail("url必须是非空字符串")
        if len(url) > MAX_URL_LENGTH:
            _fail("url过长")
        return body


BodyT = TypeVar("BodyT", bound=BaseModel)


def parse_body(model: type[BodyT], raw: str | None) -> BodyT:
    """Parse a JSON body into a contract model; every failure is a 400 with a readable message."""
    try:
        data = json.loads(
            raw, parse_constant=_refuse_non_finite, parse_float=_finite_float
        ) if raw else None
    except (ValueError, TypeError, RecursionError) as error:
        raise InvalidBody("请求体不是合法的JSON") from error
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InvalidBody(_first_message(error)) from error


def _refuse_non_finite(_literal: str) -> NoReturn:
    # Python's parser takes NaN and Infinity, the JSON spec and DynamoDB do not.
    raise NonFiniteNumber(NON_FINITE_MESSAGE)


def _finite_float(literal: str) -> float:
    value = float(literal)  # an overflowing literal such as 1e999 becomes inf
    if not math.isfinite(value):
        _refuse_non_finite(literal)
    return value


def _first_message(error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])
