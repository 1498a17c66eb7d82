"""The OpenAPI 3.1 document of the HTTP API.

Limits, enums and messages come from the modules that enforce them (contract, models, errors), so
the document moves with the code. Every route of template.yaml is here with the replies its
handler can produce, including the errors that api.http makes out of domain exceptions.
"""

from __future__ import annotations

from typing import Any, Final

from pixelbatch import errors
from pixelbatch.contract import (
    MAX_BATCH_IMAGES,
    MAX_INPUT_DATA_BYTES,
    MAX_URL_LENGTH,
    SERVER_OWNED_FIELDS,
    UPLOAD_CONTENT_TYPES,
)
from pixelbatch.imaging.failures import MESSAGES as FAILURE_MESSAGES
from pixelbatch.models import PLANS, ItemStatus, TaskStatus
from pixelbatch.services.webhooks import (
    ATTEMPTS,
    EVENT_TYPE,
    MAX_WEBHOOKS_PER_USER,
    RETRY_SCHEDULE,
)
from pixelbatch.settings import MAX_UPLOAD_BYTES

Json = dict[str, Any]
Example = type[errors.DomainError] | tuple[type[errors.DomainError], str]

OPENAPI_VERSION: Final = "3.1.0"
API_VERSION: Final = "1.0.0"
SECURITY_SCHEME: Final = "bearerAuth"
BEARER: Final[list[Json]] = [{SECURITY_SCHEME: []}]
PUBLIC: Final[list[Json]] = []
UNAUTHORIZED_CODE: Final = errors.Unauthorized.error_code

MAX_FEATURE_ID_LENGTH: Final = 64
MAX_FILENAME_LENGTH: Final = 200
MAX_LIST_LIMIT: Final = 100
DEFAULT_LIST_LIMIT: Final = 20
NOT_BLANK: Final = r"\S"
STATIC_CONTENT_TYPES: Final = ("text/javascript", "text/css", "text/html", "image/svg+xml")
IDEMPOTENCY_KEY_PATTERN: Final = r"^[A-Za-z0-9._:\-]{8,128}$"
TASK_ID_EXAMPLE: Final = "3f2c9a7e5b8d4c1fa0e6b2d97c4e8a15"
TIME_EXAMPLE: Final = "2025-05-01T08:30:00.123456Z"
WEBHOOK_ID_EXAMPLE: Final = "wh_5b0e1c6f2a9d4e3f8c7b6a5d4e3f2a1b"
SECRET_EXAMPLE: Final = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwJ1x4Zq0nU7E="
IMAGE_EXAMPLE: Final = "s3://pixelbatch-uploads/uploads/user-123/9b1d.../photo.jpg"
# `grant` is written when an account is opened or an operator adds quota, `deduct` and `plan`
# (amount 0) by operators (repos.accounts); `charge` and `refund` by the task transactions
# (repos.tasks).
LEDGER_KINDS: Final = ("grant", "charge", "refund", "deduct", "plan")
PAGE_ERRORS: Final[dict[str, Example]] = {
    "Bad limit": (errors.InvalidQuery, f"limit必须是1到{MAX_LIST_LIMIT}之间的整数"),
    "Bad cursor": errors.InvalidCursor,
}

_IDEMPOTENCY_ERRORS: Final[dict[str, Example]] = {
    "Bad Idempotency-Key": errors.InvalidIdempotencyKey,
    "Key reused": errors.IdempotencyKeyReused,
}

_BODY_ERRORS: Final[dict[str, Example]] = {
    "Body not JSON": (errors.InvalidBody, "请求体不是合法的JSON"),
    "Body not an object": (errors.InvalidBody, "请求体必须是JSON对象"),
    "NaN or Infinity": errors.NonFiniteNumber,
    "Server-owned field": errors.ServerOwnedField,
    "feature_id missing": (errors.InvalidBody, "feature_id不能为空"),
    "input_data too large": (errors.InvalidBody, "input_data过大"),
    "input_data invalid": (
        errors.InvalidParameters,
        "input_data参数无效: brightness: 300 is greater than the maximum of 100",
    ),
}


# ---------------------------------------------------------------------- small builders


def ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **extra: Any) -> Json:
    return {"type": [kind, "null"], **extra}


def _integer(minimum: int | None = None, **extra: Any) -> Json:
    schema: Json = {"type": "integer", **extra}
    if minimum is not None:
        schema["minimum"] = minimum
    return schema


def _closed(properties: Json, required: list[str] | None = None, **extra: Any) -> Json:
    """An object whose keys are exactly `properties` (required: all of them unless given)."""
    return {
        "type": "object",
        "required": list(properties) if required is None else required,
        "properties": properties,
        "additionalProperties": False,
        **extra,
    }


def _open_object(description: str) -> Json:
    return {"type": "object", "additionalProperties": True, "description": description}


def _failure(error: type[errors.DomainError], message: str | None = None) -> Json:
    return {
        "success": False,
        "errorCode": error.error_code,
        "message": message or error.default_message,
        "error": error.key,
    }


def _examples(values: dict[str, Any]) -> Json:
    return {name: {"summary": name, "value": value} for name, value in values.items()}


def _json_content(schema: Json, examples: dict[str, Any] | None = None) -> Json:
    media: Json = {"schema": schema}
    if examples:
        media["examples"] = _examples(examples)
    return {"application/json": media}


# ---------------------------------------------------------------------- component schemas


def error_keys(code: int) -> list[type[errors.DomainError]]:
    """The error types whose replies carry `errorCode` `code`, in declaration order."""
    return [error for error in errors.error_types() if error.error_code == code]


def _error_key_schema(code: int) -> Json:
    kinds = error_keys(code)
    listing = "; ".join(f"`{kind.key}`: {kind.meaning}" for kind in kinds)
    return {
        "type": "string",
        "pattern": "^[a-z][a-z0-9_]*$",
        "description": "Stable snake_case key of the cause, to branch on (new keys may be "
        f"added): {listing}",
        "examples": [kind.key for kind in kinds],
    }


def _error_schema(code: int, description: str) -> Json:
    return _closed(
        {
            "success": {"const": False},
            "errorCode": {"type": "integer", "const": code},
            "message": {"type": "string", "description": "Readable, in the product's language"},
            "error": _error_key_schema(code),
        },
        description=description,
    )


def _rate_limited_schema() -> Json:
    schema = _error_schema(errors.RateLimited.error_code, "Rate limited (429)")
    schema["properties"]["rateLimitInfo"] = _closed(
        {
            "resetAt": _integer(0, description="Unix time (seconds) the window resets"),
            "remaining": _integer(0, description="Requests left in the window"),
        }
    )
    schema["required"].append("rateLimitInfo")
    return schema


def _error_schemas() -> Json:
    return {
        "Error4001": _error_schema(errors.InvalidRequest.error_code, "Invalid request (400)"),
        "Error4003": _error_schema(errors.Forbidden.error_code, "Forbidden (403)"),
        "Error1003": _error_schema(errors.QuotaInsufficient.error_code, "Quota insufficient"),
        "Error4004": _error_schema(errors.NotFound.error_code, "Not found (404)"),
        "Error4009": _error_schema(errors.StateConflict.error_code, "State conflict (409)"),
        "Error4010": _error_schema(
            UNAUTHORIZED_CODE, "Unauthorized, from the function: the token carried no `sub` claim"
        ),
        "Error4029": _rate_limited_schema(),
        "Error5000": _error_schema(errors.DomainError.error_code, "Server error (500, 503)"),
        "GatewayMessage": _closed(
            {"message": {"type": "string"}},
            description="API Gateway's own reply, e.g. `{\"message\": \"Unauthorized\"}`",
        ),
    }


def _image_url(label: str) -> Json:
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_URL_LENGTH,
        "pattern": NOT_BLANK,
        "description": f"{label}: an `input_url` from POST /api/uploads (the caller's own "
        "upload), or an https URL on the configured host allowlist",
        "examples": [IMAGE_EXAMPLE],
    }


def _task_body_properties() -> Json:
    return {
        "feature_id": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_FEATURE_ID_LENGTH,
            "pattern": NOT_BLANK,
            "description": "A feature the caller may use (GET /api/features)",
            "examples": ["basic_clean"],
        },
        "input_data": {
            "type": ["object", "null"],
            "additionalProperties": True,
            "description": "Parameters checked against the feature's `parameters_schema`; at "
            f"most {MAX_INPUT_DATA_BYTES} bytes as JSON. Omitted or null means {{}} (the "
            "feature's defaults)",
            "examples": [{"brightness": 10, "contrast": 5}],
        },
    }


def _no_server_fields() -> Json:
    return {"not": {"enum": list(SERVER_OWNED_FIELDS)}}


def _request_schemas() -> Json:
    shared = _task_body_properties()
    note = (
        "Unknown keys are ignored, but the server-owned ones (`batch_items`, `status`, counters, "
        "charges...: those listed in `propertyNames`) are refused with a 400."
    )
    return {
        "BatchTaskRequest": {
            "type": "object",
            "required": ["feature_id", "input_images"],
            "properties": {
                "feature_id": shared["feature_id"],
                "input_images": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_BATCH_IMAGES,
                    "items": _image_url("One image"),
                },
                "input_data": shared["input_data"],
            },
            "propertyNames": _no_server_fields(),
            "additionalProperties": True,
            "description": note,
        },
        "SingleTaskRequest": {
            "type": "object",
            "required": ["feature_id", "input_image"],
            "properties": {
                "feature_id": shared["feature_id"],
                "input_image": _image_url("The image"),
                "input_data": shared["input_data"],
            },
            "propertyNames": _no_server_fields(),
            "additionalProperties": True,
            "description": note,
        },
        "UploadFile": {
            "type": "object",
            "required": ["filename", "content_type", "size"],
            "properties": {
                "filename": {"type": "string", "minLength": 1, "maxLength": MAX_FILENAME_LENGTH},
                "content_type": {"type": "string", "enum": list(UPLOAD_CONTENT_TYPES)},
                "size": _integer(
                    1,
                    maximum=MAX_UPLOAD_BYTES,
                    description="Bytes the client will PUT (the presigned URL is bound to it)",
                ),
            },
            "additionalProperties": True,
        },
        "WebhookRequest": {
            "type": "object",
            "required": ["url"],
            "properties": {
                "url": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_URL_LENGTH,
                    "pattern": "^https://",
                    "description": "Where task events are POSTed: an https URL of a public "
                    "host (a name resolving to a private, loopback or link-local address is "
                    "refused when a delivery connects)",
                    "examples": ["https://hooks.example.com/pixelbatch"],
                },
            },
            "propertyNames": _no_server_fields(),
            "additionalProperties": True,
            "description": note,
        },
        "UploadsRequest": {
            "type": "object",
            "required": ["files"],
            "properties": {
                "files": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_BATCH_IMAGES,
                    "items": ref("UploadFile"),
                },
            },
            "propertyNames": _no_server_fields(),
            "additionalProperties": True,
            "description": note,
        },
    }


def _task_summary_properties() -> Json:
    return {
        "id": {"type": "string", "examples": [TASK_ID_EXAMPLE]},
        "userId": {"type": "string", "description": "The owner (the token's `sub`)"},
        "feature_id": {"type": "string"},
        "status": ref("TaskStatus"),
        "is_batch": {"type": "boolean"},
        "batch_total": _integer(1),
        "batch_success": _integer(0),
        "batch_failed": _integer(0),
        "batch_cancelled": _integer(0),
        "quota_cost": _integer(0, description="Cost of one image (per attempt)"),
        "createdAt": {"type": "string", "format": "date-time"},
        "updatedAt": {"type": "string", "format": "date-time"},
    }


def _task_details_schema() -> Json:
    properties = {
        **_task_summary_properties(),
        "batch_pending": _integer(0),
        "batch_processing": _integer(0),
        "input_data": _open_object("The parameters used, defaults filled in"),
        "round": _integer(1, description="1, plus one per retry-failed"),
        "error_message": _nullable("string"),
        "batch_items": {"type": "array", "items": ref("BatchItem")},
        "output_url": _nullable(
            "string", description="Single tasks only: the result's presigned GET URL, or null"
        ),
    }
    required = [name for name in properties if name != "output_url"]
    return _closed(properties, required, description="Counters and items are live")


def _batch_item_schema() -> Json:
    return _closed(
        {
            "index": _integer(0, description="Position in input_images"),
            "input_url": {"type": "string"},
            "status": ref("ItemStatus"),
            "output_url": _nullable(
                "string", description="Fresh presigned GET URL of the result, or null"
            ),
            "error_message": _nullable("string"),
            "error_code": _nullable("string", examples=["not_an_image", "timeout"]),
            "retryable": _nullable("boolean", description="Whether retrying can help"),
            "attempt": _integer(1),
        }
    )


def _created_schemas() -> Json:
    batch = {
        "task_id": {"type": "string", "examples": [TASK_ID_EXAMPLE]},
        "batch_total": _integer(1),
        "quota_cost": _integer(0, description="Charged in total: images x the feature's cost"),
        "created_at": {"type": "string", "format": "date-time"},
    }
    return {
        "BatchTaskCreated": _closed(batch),
        "SingleTaskCreated": _closed({**batch, "status": ref("TaskStatus")}),
    }


def _next_cursor() -> Json:
    return _nullable("string", description="Pass as `cursor` for the next page; null at the end")


def _account_schemas() -> Json:
    return {
        "LedgerEntry": _closed(
            {
                "entry_id": {"type": "string"},
                "kind": {
                    "type": "string",
                    "enum": list(LEDGER_KINDS),
                    "description": "`grant`: quota given to the account (its opening balance, "
                    "or added later); `deduct`: quota taken back; `plan`: a plan change "
                    "(amount 0); `charge` and `refund`: a task's images",
                },
                "amount": _integer(0),
                "task_id": _nullable("string"),
                "items": {"type": "array", "items": _integer(0)},
                "created_at": {"type": "string", "format": "date-time"},
            }
        ),
        "Quota": _closed(
            {
                "balance": _integer(),
                "plan": {"type": "string", "enum": list(PLANS)},
                "ledger": {
                    "type": "array",
                    "items": ref("LedgerEntry"),
                    "description": "One page of the ledger (grants, charges and refunds), "
                    "newest first",
                },
                "next_cursor": _next_cursor(),
            }
        ),
        "Feature": _closed(
            {
                "feature_id": {"type": "string"},
                "name": {"type": "string"},
                "description": {"type": "string"},
                "quota_cost": _integer(0, description="Charged per image"),
                "rate_limit": _closed({"limit": _integer(0), "window_seconds": _integer(1)}),
                "parameters_schema": _open_object("JSON Schema of the feature's input_data"),
            }
        ),
        "FeatureList": _closed({"features": {"type": "array", "items": ref("Feature")}}),
        "Upload": _closed(
            {
                "upload_url": {"type": "string", "description": "Presigned PUT URL"},
                "input_url": {
                    "type": "string",
                    "pattern": "^s3://",
                    "description": "Put this in input_images once the PUT succeeded",
                },
                "headers": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "description": "Headers the PUT must send",
                },
                "expires_at": {"type": "string", "format": "date-time"},
            }
        ),
        "UploadList": _closed({"uploads": {"type": "array", "items": ref("Upload")}}),
        **_webhook_schemas(),
    }


def _webhook_properties() -> Json:
    return {
        "webhook_id": {"type": "string", "examples": [WEBHOOK_ID_EXAMPLE]},
        "url": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
    }


def _webhook_schemas() -> Json:
    return {
        "Webhook": _closed(_webhook_properties(),
                           description="An endpoint; its secret is not shown again"),
        "WebhookCreated": _closed(
            {
                **_webhook_properties(),
                "secret": {
                    "type": "string",
                    "pattern": "^whsec_[A-Za-z0-9+/]+={0,2}$",
                    "description": "The signing secret (`whsec_` + base64 of 32 random bytes), "
                    "shown only in this reply: keep it. To replace it, register the URL again "
                    "and delete the old endpoint.",
                },
            },
        ),
        "WebhookList": _closed({"webhooks": {"type": "array", "items": ref("Webhook")}}),
        "WebhookDeleted": _closed({"webhook_id": {"type": "string"},
                                   "deleted": {"const": True}}),
    }


def _reply_schemas() -> Json:
    return {
        "TaskStatus": {"type": "string", "enum": [status.value for status in TaskStatus]},
        "ItemStatus": {"type": "string", "enum": [status.value for status in ItemStatus]},
        **_created_schemas(),
        "TaskSummary": _closed(_task_summary_properties()),
        "TaskDetails": _task_details_schema(),
        "BatchItem": _batch_item_schema(),
        "TaskPage": _closed(
            {
                "tasks": {"type": "array", "items": ref("TaskSummary")},
                "next_cursor": _next_cursor(),
            }
        ),
        "RetryFailedReply": _closed(
            {
                "success": {"const": True},
                "message": {"type": "string", "examples": ["已重新提交3个失败项"]},
                "quota_cost": _integer(0, description="Charged for the resubmitted items"),
            }
        ),
        "CancelReply": _closed(
            {
                "success": {"const": True},
                "message": {"type": "string", "examples": ["任务已取消，返还5配额"]},
                "refund_amount": _integer(0),
            }
        ),
        **_account_schemas(),
    }


def _schemas() -> Json:
    return {**_request_schemas(), **_reply_schemas(), **_error_schemas()}


# ---------------------------------------------------------------------- shared components


def _parameters() -> Json:
    return {
        "TaskId": {
            "name": "taskId",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1},
            "description": "The `task_id` returned on creation",
            "example": TASK_ID_EXAMPLE,
        },
        "WebhookId": {
            "name": "webhookId",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1},
            "description": "The `webhook_id` returned on registration",
            "example": WEBHOOK_ID_EXAMPLE,
        },
        "IdempotencyKey": {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
            "description": "Repeating a successful request with the same key (for 24 h) returns "
            "the first reply without moving money again; the same key with a different body is "
            "refused (400), and one still in progress gets a 409. Failures are not remembered. "
            "Use a fresh random value (a UUID) per intended operation.",
        },
    }


def _headers() -> Json:
    return {
        "RetryAfter": {
            "description": "Seconds until the rate-limit window resets",
            "required": True,
            "schema": _integer(1),
        },
        "Location": {
            "description": "Presigned S3 URL of the ZIP",
            "required": True,
            "schema": {"type": "string"},
        },
        "CacheControl": {"schema": {"type": "string", "const": "no-store"}},
    }


def _shared_responses() -> Json:
    unauthorized = (
        "Missing, malformed or expired token: API Gateway's JWT authorizer answers "
        "`{\"message\": \"Unauthorized\"}`. A valid token without a `sub` claim gets the "
        "envelope with errorCode 4010."
    )
    return {
        "Unauthorized": {
            "description": unauthorized,
            "content": _json_content(
                {"anyOf": [ref("GatewayMessage"), ref("Error4010")]},
                {
                    "Gateway": {"message": "Unauthorized"},
                    "No sub claim": _failure(errors.Unauthorized),
                },
            ),
        },
        "ServerError": {
            "description": "Anything unexpected (no internal detail in the body); API Gateway "
            "answers `{\"message\": \"Internal Server Error\"}` if the function itself fails",
            "content": _json_content(
                {"anyOf": [ref("Error5000"), ref("GatewayMessage")]},
                {
                    "Handler": _failure(errors.DomainError),
                    "Gateway": {"message": "Internal Server Error"},
                },
            ),
        },
    }


def _components() -> Json:
    return {
        "securitySchemes": {
            SECURITY_SCHEME: {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "A Cognito user pool token; the user id is its `sub` claim",
            }
        },
        "schemas": _schemas(),
        "parameters": _parameters(),
        "headers": _headers(),
        "responses": _shared_responses(),
    }


# ---------------------------------------------------------------------- replies of operations


def _shared(name: str) -> Json:
    return {"$ref": f"#/components/responses/{name}"}


def _param(name: str) -> Json:
    return {"$ref": f"#/components/parameters/{name}"}


def _ok(schema_name: str, example: Any, description: str = "OK") -> Json:
    envelope = _closed({"success": {"const": True}, "data": ref(schema_name)})
    return {
        "description": description,
        "content": _json_content(envelope, {"OK": {"success": True, "data": example}}),
    }


def _ok_flat(schema_name: str, example: Json) -> Json:
    return {"description": "OK", "content": _json_content(ref(schema_name), {"OK": example})}


def _error(description: str, examples: dict[str, Example]) -> Json:
    """A failure reply; its schema allows exactly the errorCodes of the examples."""
    values = {name: _failure_of(example) for name, example in examples.items()}
    codes = dict.fromkeys(value["errorCode"] for value in values.values())
    schemas = [ref(f"Error{code}") for code in codes]
    schema = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    return {"description": description, "content": _json_content(schema, values)}


def _failure_of(example: Example) -> Json:
    if isinstance(example, tuple):
        return _failure(*example)
    return _failure(example)


def _bad_request(examples: dict[str, Example]) -> Json:
    return _error("Invalid body or query (errorCode 4001); nothing is charged", examples)


def _conflict(description: str, examples: dict[str, Example]) -> Json:
    conflicts = {
        **examples,
        "Same key in progress": errors.RequestInProgress,
        "Contention": errors.ConcurrentUpdate,
    }
    return _error(description, conflicts)


def _rate_limited() -> Json:
    example = _failure(errors.RateLimited)
    example["rateLimitInfo"] = {"resetAt": 1746088260, "remaining": 0}
    return {
        "description": "Too many requests for this feature in the current window",
        "headers": {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}},
        "content": _json_content(ref("Error4029"), {"Rate limited": example}),
    }


def _task_forbidden() -> Json:
    return _error("The task belongs to someone else", {"Not the owner": errors.NotTaskOwner})


def _task_not_found() -> Json:
    return _error("No such task", {"Unknown task": errors.TaskNotFound})


def _start_failed() -> Json:
    return _error(
        "Processing could not be started; the charge has been undone",
        {"Start failed": errors.StartFailed},
    )


def _create_errors(bad_request: dict[str, Example]) -> Json:
    return {
        "400": _bad_request({**bad_request, **_IDEMPOTENCY_ERRORS}),
        "401": _shared("Unauthorized"),
        "403": _error(
            "Feature disabled or not in the caller's plan (4003), or quota insufficient (1003)",
            {
                "Feature disabled": errors.FeatureDisabled,
                "Plan not allowed": errors.PlanNotAllowed,
                "Quota insufficient": errors.QuotaInsufficient,
            },
        ),
        "404": _error(
            "The feature does not exist (or was deleted)",
            {"Unknown feature": errors.FeatureNotFound},
        ),
        "409": _conflict(
            "A request with the same Idempotency-Key is still in progress, or contention on "
            "the account outlasted the retries",
            {},
        ),
        "429": _rate_limited(),
        "500": _shared("ServerError"),
        "503": _start_failed(),
    }


# ---------------------------------------------------------------------- operations


def _create_batch() -> Json:
    example_body = {
        "feature_id": "basic_clean",
        "input_images": [IMAGE_EXAMPLE, "https://images.unsplash.com/photo-1.jpg"],
        "input_data": {"brightness": 10, "contrast": 5},
    }
    created = {"task_id": TASK_ID_EXAMPLE, "batch_total": 2, "quota_cost": 2,
               "created_at": TIME_EXAMPLE}
    bad_request: dict[str, Example] = {
        "input_images not an array": errors.ImagesNotArray,
        "No images": errors.NoImages,
        "Too many images": errors.TooManyImages,
        **_BODY_ERRORS,
        "Image not allowed": (
            errors.ImageNotAllowed, f"第1张图片: {FAILURE_MESSAGES['blocked_destination']}"
        ),
    }
    return {
        "tags": ["tasks"],
        "operationId": "createBatchTask",
        "summary": "Create a batch task (1 to 50 images)",
        "description": "Checks the feature (exists, not deleted, enabled), the caller's plan, "
        "input_data against the feature's parameters_schema and the rate limit; then charges "
        "`len(input_images) x quota_cost` and creates the task in one transaction, and starts "
        "processing without waiting for it. Poll GET /api/tasks/{taskId}.",
        "security": BEARER,
        "parameters": [_param("IdempotencyKey")],
        "requestBody": {
            "required": True,
            "content": _json_content(ref("BatchTaskRequest"), {"Batch": example_body}),
        },
        "responses": {
            "200": _ok("BatchTaskCreated", created, "Charged and started"),
            **_create_errors(bad_request),
        },
    }


def _create_single() -> Json:
    example_body = {"feature_id": "basic_clean", "input_image": IMAGE_EXAMPLE,
                    "input_data": {"brightness": 10}}
    created = {"task_id": TASK_ID_EXAMPLE, "batch_total": 1, "quota_cost": 1,
               "created_at": TIME_EXAMPLE, "status": TaskStatus.PENDING.value}
    bad_request: dict[str, Example] = {
        **_BODY_ERRORS, "input_image missing": (errors.InvalidBody, "input_image必须是非空字符串"),
    }
    return {
        "tags": ["tasks"],
        "operationId": "createTask",
        "summary": "Create a single-image task",
        "description": "Same checks, charge and engine as a batch of one; the task has "
        "`is_batch: false`.",
        "security": BEARER,
        "parameters": [_param("IdempotencyKey")],
        "requestBody": {
            "required": True,
            "content": _json_content(ref("SingleTaskRequest"), {"Single": example_body}),
        },
        "responses": {
            "200": _ok("SingleTaskCreated", created, "Charged and started"),
            **_create_errors(bad_request),
        },
    }


def _page_parameters() -> list[Json]:
    return [
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": _integer(1, maximum=MAX_LIST_LIMIT, default=DEFAULT_LIST_LIMIT),
            "description": "Page size",
        },
        {
            "name": "cursor",
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": "`next_cursor` of the previous page (opaque; only the caller's own "
            "cursors are accepted)",
        },
    ]


def _list_tasks() -> Json:
    page = {"tasks": [_summary_example()], "next_cursor": None}
    return {
        "tags": ["tasks"],
        "operationId": "listTasks",
        "summary": "The caller's tasks, newest first",
        "security": BEARER,
        "parameters": _page_parameters(),
        "responses": {
            "200": _ok("TaskPage", page),
            "400": _bad_request(dict(PAGE_ERRORS)),
            "401": _shared("Unauthorized"),
            "500": _shared("ServerError"),
        },
    }


def _summary_example() -> Json:
    return {
        "id": TASK_ID_EXAMPLE, "userId": "user-123", "feature_id": "basic_clean",
        "status": TaskStatus.PARTIAL_SUCCESS.value, "is_batch": True, "batch_total": 2,
        "batch_success": 1, "batch_failed": 1, "batch_cancelled": 0, "quota_cost": 1,
        "createdAt": TIME_EXAMPLE, "updatedAt": TIME_EXAMPLE,
    }


def _details_example() -> Json:
    done = {"index": 0, "input_url": IMAGE_EXAMPLE, "status": ItemStatus.SUCCESS.value,
            "output_url": "https://pixelbatch-outputs.s3.amazonaws.com/...&X-Amz-Signature=...",
            "error_message": None, "error_code": None, "retryable": None, "attempt": 1}
    failed = {"index": 1, "input_url": "https://images.unsplash.com/photo-1.jpg",
              "status": ItemStatus.FAILED.value, "output_url": None,
              "error_message": FAILURE_MESSAGES["not_an_image"], "error_code": "not_an_image",
              "retryable": False, "attempt": 1}
    return {
        **_summary_example(), "batch_pending": 0, "batch_processing": 0,
        "input_data": {"brightness": 10, "contrast": 5}, "round": 1, "error_message": None,
        "batch_items": [done, failed],
    }


def _get_task() -> Json:
    return {
        "tags": ["tasks"],
        "operationId": "getTask",
        "summary": "A task with its items, live while it runs",
        "security": BEARER,
        "parameters": [_param("TaskId")],
        "responses": {
            "200": _ok("TaskDetails", _details_example()),
            "401": _shared("Unauthorized"),
            "403": _task_forbidden(),
            "404": _task_not_found(),
            "500": _shared("ServerError"),
        },
    }


def _download_zip() -> Json:
    return {
        "tags": ["tasks"],
        "operationId": "downloadTaskZip",
        "summary": "Redirect to the ZIP of a batch's results",
        "description": "The ZIP holds `result_<index+1>.<ext>` for every successful item and a "
        "manifest; it is served with `Content-Disposition: attachment; "
        "filename=\"batch_<taskId>.zip\"`. A finished batch with at least one success has one, "
        "a cancelled batch included (written moments after the cancel). The URL is on the "
        "bucket's regional virtual host, `<bucket>.s3.<region>.amazonaws.com`.",
        "security": BEARER,
        "parameters": [
            _param("TaskId"),
            {
                "name": "successOnly",
                "in": "query",
                "required": False,
                "schema": {"type": "boolean", "default": True},
                "description": "Validated (true/false, also 1/0, any case) but not used yet: the "
                "ZIP only ever holds the successful results",
            },
        ],
        "responses": {
            "302": {
                "description": "Found: a fresh presigned GET URL of the ZIP (empty body)",
                "headers": {
                    "Location": {"$ref": "#/components/headers/Location"},
                    "Cache-Control": {"$ref": "#/components/headers/CacheControl"},
                },
            },
            "400": _bad_request(
                {
                    "Not a batch": errors.NotABatchTask,
                    "Nothing to download": errors.NothingToDownload,
                    "Bad successOnly": (errors.InvalidQuery, "successOnly必须是true或false"),
                }
            ),
            "401": _shared("Unauthorized"),
            "403": _task_forbidden(),
            "404": _task_not_found(),
            "500": _shared("ServerError"),
        },
    }


def _retry_failed() -> Json:
    return {
        "tags": ["tasks"],
        "operationId": "retryFailedItems",
        "summary": "Run a batch's failed items again",
        "description": "Charges the failed items once (concurrent calls charge once between "
        "them) and runs them again.",
        "security": BEARER,
        "parameters": [_param("TaskId"), _param("IdempotencyKey")],
        "responses": {
            "200": _ok_flat(
                "RetryFailedReply",
                {"success": True, "message": "已重新提交3个失败项", "quota_cost": 3},
            ),
            "400": _bad_request(
                {
                    "Nothing failed": errors.NoFailedItems,
                    "Not a batch": errors.NotABatchTask,
                    **_IDEMPOTENCY_ERRORS,
                }
            ),
            "401": _shared("Unauthorized"),
            "403": _error(
                "Someone else's task (4003), or quota insufficient (1003)",
                {
                    "Not the owner": errors.NotTaskOwner,
                    "Quota insufficient": errors.QuotaInsufficient,
                },
            ),
            "404": _task_not_found(),
            "409": _conflict(
                "The task was cancelled, or a request with the same Idempotency-Key is still "
                "in progress",
                {"Cancelled": errors.TaskCancelled},
            ),
            "500": _shared("ServerError"),
            "503": _start_failed(),
        },
    }


def _cancel() -> Json:
    return {
        "tags": ["tasks"],
        "operationId": "cancelTask",
        "summary": "Cancel a pending or processing task",
        "description": "Moves every unfinished item to cancelled and refunds each charged "
        "attempt that has not succeeded, exactly once, even while items are finishing. "
        "`refund_amount` is what this call refunded.",
        "security": BEARER,
        "parameters": [_param("TaskId"), _param("IdempotencyKey")],
        "responses": {
            "200": _ok_flat(
                "CancelReply",
                {"success": True, "message": "任务已取消，返还5配额", "refund_amount": 5},
            ),
            "400": _bad_request(dict(_IDEMPOTENCY_ERRORS)),
            "401": _shared("Unauthorized"),
            "403": _task_forbidden(),
            "404": _task_not_found(),
            "409": _conflict(
                "The task has already finished (or was cancelled), or a request with the same "
                "Idempotency-Key is still in progress",
                {"Finished": errors.TaskFinished},
            ),
            "500": _shared("ServerError"),
        },
    }


def _get_quota() -> Json:
    ledger = [
        {"entry_id": f"charge#{TASK_ID_EXAMPLE}#r1", "kind": "charge", "amount": 2,
         "task_id": TASK_ID_EXAMPLE, "items": [0, 1], "created_at": TIME_EXAMPLE},
        {"entry_id": "grant#2025-05-01T08:00:00.000000Z", "kind": "grant", "amount": 100,
         "task_id": None, "items": [], "created_at": "2025-05-01T08:00:00.000000Z"},
    ]
    quota = {"balance": 98, "plan": "free", "ledger": ledger, "next_cursor": None}
    return {
        "tags": ["account"],
        "operationId": "getQuota",
        "summary": "Quota balance, plan and the ledger, newest first, one page at a time",
        "security": BEARER,
        "parameters": _page_parameters(),
        "responses": {
            "200": _ok("Quota", quota),
            "400": _bad_request(dict(PAGE_ERRORS)),
            "401": _shared("Unauthorized"),
            "500": _shared("ServerError"),
        },
    }


def _list_features() -> Json:
    feature = {
        "feature_id": "basic_clean", "name": "Basic clean",
        "description": "Auto-orient, then adjust brightness and contrast.", "quota_cost": 1,
        "rate_limit": {"limit": 30, "window_seconds": 60},
        "parameters_schema": {
            "type": "object", "additionalProperties": False,
            "properties": {"brightness": {"type": "integer", "minimum": -100, "maximum": 100}},
        },
    }
    return {
        "tags": ["account"],
        "operationId": "listFeatures",
        "summary": "The features the caller's plan may use, with their parameter schemas",
        "security": BEARER,
        "responses": {
            "200": _ok("FeatureList", {"features": [feature]}),
            "401": _shared("Unauthorized"),
            "500": _shared("ServerError"),
        },
    }


def _create_uploads() -> Json:
    body = {"files": [{"filename": "photo.jpg", "content_type": "image/jpeg", "size": 482113}]}
    upload = {"upload_url": "https://pixelbatch-uploads.s3.amazonaws.com/uploads/...",
              "input_url": IMAGE_EXAMPLE, "headers": {"Content-Type": "image/jpeg"},
              "expires_at": TIME_EXAMPLE}
    return {
        "tags": ["account"],
        "operationId": "createUploads",
        "summary": "Presigned PUT URLs for 1 to 50 images, one per file in order",
        "description": "PUT each file's bytes to `upload_url` with `headers`, then use "
        "`input_url` in a task.",
        "security": BEARER,
        "requestBody": {
            "required": True,
            "content": _json_content(ref("UploadsRequest"), {"One file": body}),
        },
        "responses": {
            "200": _ok("UploadList", {"uploads": [upload]}),
            "400": _bad_request(
                {
                    "files not an array": (errors.InvalidBody, "files必须是数组"),
                    "No files": errors.NoImages,
                    "Too many files": errors.TooManyImages,
                    "Unsupported type": (
                        errors.UnsupportedFileType, "files[0]: 不支持的文件类型 text/plain"
                    ),
                    "Too large": (errors.FileTooLarge, "files[0]: 图片文件过大"),
                }
            ),
            "401": _shared("Unauthorized"),
            "500": _shared("ServerError"),
        },
    }


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


def _webhook_events() -> str:
    return (
        f"Each time one of the caller's tasks reaches a final status (`success`, "
        f"`partial_success`, `failed` or `cancelled`; again after a retry), every endpoint gets a "
        f"`POST` of `{{\"type\": \"{EVENT_TYPE}\", \"timestamp\", \"data\": {{task_id, status, "
        "batch_total, batch_success, batch_failed, refund_amount}}}` (`refund_amount`: the quota "
        "returned for the images that did not succeed), signed per the Standard Webhooks "
        "specification: `webhook-id` (the same on every attempt: deduplicate on it), "
        "`webhook-timestamp` (of the attempt, Unix seconds) and `webhook-signature: v1,<base64 "
        "HMAC-SHA256 of \"id.timestamp.body\" keyed with the secret's base64-decoded bytes>`. "
        "Verify with a Standard Webhooks library (`standardwebhooks` on PyPI). Answer 2xx "
        "within 10 seconds; anything else (a redirect too) is tried again after "
        f"{', '.join(_duration(delay) for delay in RETRY_SCHEDULE)}: {ATTEMPTS} attempts in all."
    )


def _webhook_examples() -> tuple[Json, Json]:
    listed = {"webhook_id": WEBHOOK_ID_EXAMPLE, "url": "https://hooks.example.com/pixelbatch",
              "created_at": TIME_EXAMPLE}
    return listed, {**listed, "secret": SECRET_EXAMPLE}


def _create_webhook() -> Json:
    _, created = _webhook_examples()
    return {
        "tags": ["webhooks"],
        "operationId": "createWebhook",
        "summary": f"Register an endpoint for task events (at most {MAX_WEBHOOKS_PER_USER})",
        "description": _webhook_events(),
        "security": BEARER,
        "requestBody": {
            "required": True,
            "content": _json_content(ref("WebhookRequest"),
                                     {"An endpoint": {"url": created["url"]}}),
        },
        "responses": {
            "200": _ok("WebhookCreated", created),
            "400": _bad_request({
                "Body not JSON": (errors.InvalidBody, "请求体不是合法的JSON"),
                "url missing": (errors.InvalidBody, "url必须是非空字符串"),
                "Not https": (errors.WebhookUrlInvalid, "Webhook地址必须是https URL"),
                "Private address": (errors.WebhookUrlInvalid, "Webhook地址必须指向公网地址"),
                "Too many": errors.TooManyWebhooks,
            }),
            "401": _shared("Unauthorized"),
            "500": _shared("ServerError"),
        },
    }


def _list_webhooks() -> Json:
    listed, _ = _webhook_examples()
    return {
        "tags": ["webhooks"],
        "operationId": "listWebhooks",
        "summary": "The caller's endpoints, oldest first (without their secrets)",
        "security": BEARER,
        "responses": {
            "200": _ok("WebhookList", {"webhooks": [listed]}),
            "401": _shared("Unauthorized"),
            "500": _shared("ServerError"),
        },
    }


def _delete_webhook() -> Json:
    return {
        "tags": ["webhooks"],
        "operationId": "deleteWebhook",
        "summary": "Delete one of the caller's endpoints; its pending deliveries are dropped",
        "security": BEARER,
        "parameters": [_param("WebhookId")],
        "responses": {
            "200": _ok("WebhookDeleted", {"webhook_id": WEBHOOK_ID_EXAMPLE, "deleted": True}),
            "401": _shared("Unauthorized"),
            "404": _error("No such endpoint of the caller's", {"Unknown": errors.WebhookNotFound}),
            "500": _shared("ServerError"),
        },
    }


def _openapi_json() -> Json:
    return {
        "tags": ["docs"],
        "operationId": "getOpenApiDocument",
        "summary": "This document",
        "security": PUBLIC,
        "responses": {
            "200": {
                "description": "The OpenAPI 3.1 document",
                "content": {"application/json": {"schema": _open_object("OpenAPI document")}},
            },
            "500": _shared("ServerError"),
        },
    }


def _docs_page() -> Json:
    return {
        "tags": ["docs"],
        "operationId": "getDocsPage",
        "summary": "Swagger UI of this document, with Authorize and try-it-out (no token "
        "needed to read it)",
        "security": PUBLIC,
        "responses": {
            "200": {
                "description": "Self-contained HTML",
                "content": {"text/html": {"schema": {"type": "string"}}},
            },
            "500": _shared("ServerError"),
        },
    }


def _static_file(operation_id: str, summary: str, tag: str, description: str) -> Json:
    return {
        "tags": [tag],
        "operationId": operation_id,
        "summary": summary,
        "description": description,
        "security": PUBLIC,
        "parameters": [
            {
                "name": "name",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._-]+$"},
                "description": "A file name",
            }
        ],
        "responses": {
            "200": {
                "description": "The file, by its type; `config.json` is JSON",
                "content": {
                    **{kind: {"schema": {"type": "string"}} for kind in STATIC_CONTENT_TYPES},
                    "application/json": {"schema": _open_object("The console's settings")},
                },
            },
            "404": _error("No such file", {"Unknown file": errors.NotFound}),
            "500": _shared("ServerError"),
        },
    }


def _console_page() -> Json:
    return {
        "tags": ["console"],
        "operationId": "getConsolePage",
        "summary": "The web console: sign in, upload, run and follow batches, quota and ledger",
        "security": PUBLIC,
        "responses": {
            "200": {
                "description": "HTML; the console then calls this API with the user's token",
                "content": {"text/html": {"schema": {"type": "string"}}},
            },
            "500": _shared("ServerError"),
        },
    }


def _paths() -> Json:
    return {
        "/api/tasks/batch": {"post": _create_batch()},
        "/api/tasks": {"get": _list_tasks(), "post": _create_single()},
        "/api/tasks/{taskId}": {"get": _get_task()},
        "/api/tasks/{taskId}/download-zip": {"get": _download_zip()},
        "/api/tasks/{taskId}/retry-failed": {"post": _retry_failed()},
        "/api/tasks/{taskId}/cancel": {"post": _cancel()},
        "/api/quota": {"get": _get_quota()},
        "/api/features": {"get": _list_features()},
        "/api/uploads": {"post": _create_uploads()},
        "/api/webhooks": {"get": _list_webhooks(), "post": _create_webhook()},
        "/api/webhooks/{webhookId}": {"delete": _delete_webhook()},
        "/api/openapi.json": {"get": _openapi_json()},
        "/api/docs": {"get": _docs_page()},
        "/api/docs/{name}": {"get": _static_file(
            "getDocsFile", "A file of the docs page (Swagger UI, bundled)", "docs",
            "Swagger UI's script and style, from the copy Powertools ships, and the page's own.",
        )},
        "/": {"get": _console_page()},
        "/console/{name}": {"get": _static_file(
            "getConsoleFile", "A file of the web console", "console",
            "The console's modules and style; `config.json` says how it signs people in "
            "(`{\"auth\": \"local\"}` on the local stack, or the Cognito Hosted UI's "
            "addresses and client id).",
        )},
    }


_DESCRIPTION: Final = (
    "Batch image processing. Every route but the public docs and console routes needs "
    "`Authorization: Bearer <JWT>`.\n\n"
    "Success: `{\"success\": true, \"data\": {...}}` (retry-failed and cancel put their fields "
    "beside `success`). Failure: `{\"success\": false, \"errorCode\": <int>, \"message\": "
    "\"...\"}` with 400/4001, 403/4003, 403/1003 (quota), 404/4004, 409/4009, 429/4029 (with "
    "`Retry-After` and `rateLimitInfo`), 500/5000 and 503/5000 (processing could not start, "
    "charge undone). 401 is API Gateway's `{\"message\": \"Unauthorized\"}`.\n\n"
    "Every failure reply also carries `\"error\"`, a stable snake_case key of its cause, so a "
    "client can branch without reading the message:"
)


def _description() -> str:
    rows = [
        f"| `{kind.key}` | {kind.http_status} | {kind.error_code} | {kind.meaning} |"
        for kind in errors.error_types()
        if kind is not errors.Unauthorized
    ]
    table = ["| error | HTTP | errorCode | cause |", "|---|---|---|---|", *rows]
    return _DESCRIPTION + "\n\n" + "\n".join(table)


def build_document(server_url: str = "/") -> Json:
    """The whole document; `server_url` is relative so it resolves against wherever it is
    served (use `/<stage>` behind a named API Gateway stage)."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "PixelBatch API", "version": API_VERSION, "description": _description()},
        "servers": [{"url": server_url, "description": "This API, wherever it is served"}],
        "tags": [
            {"name": "tasks", "description": "Create, follow, download, retry and cancel tasks"},
            {"name": "account", "description": "Quota, features and uploads"},
            {"name": "webhooks", "description": "Endpoints told when a task finishes"},
            {"name": "docs", "description": "This document and its Swagger UI page (public)"},
            {"name": "console", "description": "The web console's static files (public)"},
        ],
        "paths": _paths(),
        "components": _components(),
    }
