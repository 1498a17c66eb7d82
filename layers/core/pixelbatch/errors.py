"""Domain errors. Logic and data access raise these; api.http turns them into replies, once.

Each type carries the contract's HTTP status and `errorCode`, its default message, and a stable
snake_case `key` that replies carry as `"error"`, so clients can branch without reading the
message. A key names one cause; several causes may share an `errorCode`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar


class DomainError(Exception):
    http_status: ClassVar[int] = 500
    error_code: ClassVar[int] = 5000
    key: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "服务器内部错误"
    meaning: ClassVar[str] = "Anything unexpected; no internal detail is given"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


# ---------------------------------------------------------------------- 400 / 4001


class InvalidRequest(DomainError):
    http_status = 400
    error_code = 4001
    key = "invalid_request"
    default_message = "请求参数无效"
    meaning = "The request is invalid"


class InvalidBody(InvalidRequest):
    key = "invalid_body"
    meaning = "The body is not JSON, not an object, or a field has the wrong type or size"


class NonFiniteNumber(InvalidRequest):
    key = "non_finite_number"
    default_message = "请求体不能包含NaN、Infinity等非有限数值"
    meaning = "The body holds NaN, Infinity or a number too large to be finite"


class ImagesNotArray(InvalidRequest):
    key = "images_not_array"
    default_message = "input_images必须是数组"
    meaning = "`input_images` is missing or not an array"


class NoImages(InvalidRequest):
    key = "no_images"
    default_message = "至少需要上传1张图片"
    meaning = "No image (or no file to upload) was given"


class TooManyImages(InvalidRequest):
    key = "too_many_images"
    default_message = "批量处理最多支持50张图片"
    meaning = "More than 50 images (or files to upload)"


class ServerOwnedField(InvalidRequest):
    key = "server_owned_field"
    default_message = "batch_items由服务端维护，不能由客户端提交"
    meaning = "The body sets a field only the server may set (`batch_items`, `status`, ...)"


class InvalidParameters(InvalidRequest):
    key = "invalid_parameters"
    meaning = "`input_data` does not match the feature's `parameters_schema`"


class ImageNotAllowed(InvalidRequest):
    key = "image_not_allowed"
    meaning = "An image is neither the caller's upload nor an https URL on the allowlist"


class UnsupportedFileType(InvalidRequest):
    key = "unsupported_file_type"
    meaning = "A file to upload has a content type that is not an accepted image type"


class FileTooLarge(InvalidRequest):
    key = "file_too_large"
    default_message = "图片文件过大"
    meaning = "A file to upload is larger than the upload limit"


class InvalidQuery(InvalidRequest):
    key = "invalid_query"
    meaning = "A query parameter (`limit`, `successOnly`) is out of range or malformed"


class InvalidCursor(InvalidRequest):
    key = "invalid_cursor"
    default_message = "cursor无效"
    meaning = "`cursor` is not a `next_cursor` this caller was given"


class InvalidIdempotencyKey(InvalidRequest):
    key = "invalid_idempotency_key"
    default_message = "Idempotency-Key必须是8到128位的字母、数字或._:-"
    meaning = "The `Idempotency-Key` header is malformed"


class IdempotencyKeyReused(InvalidRequest):
    key = "idempotency_key_reused"
    default_message = "Idempotency-Key已用于另一个不同的请求"
    meaning = "The `Idempotency-Key` was used before with a different body"


class WebhookUrlInvalid(InvalidRequest):
    key = "webhook_url_invalid"
    default_message = "Webhook地址无效"
    meaning = "The webhook `url` is not an https URL of a public host"


class TooManyWebhooks(InvalidRequest):
    key = "too_many_webhooks"
    default_message = "Webhook数量已达上限"
    meaning = "The caller already has the most webhook endpoints allowed"


class NotABatchTask(InvalidRequest):
    key = "not_a_batch"
    default_message = "该任务不是批量任务"
    meaning = "The route needs a batch task and this one is a single-image task"


class NothingToDownload(InvalidRequest):
    key = "nothing_to_download"
    default_message = "没有可下载的文件"
    meaning = "The batch has no ZIP yet (still running) or no successful image"


class NoFailedItems(InvalidRequest):
    key = "nothing_to_retry"
    default_message = "没有失败的子任务需要重试"
    meaning = "No item has failed (or another retry took them first)"


# ---------------------------------------------------------------------- 401, 403


class Unauthorized(DomainError):
    """A verified token without a `sub` claim; answered as the JWT authorizer answers."""

    http_status = 401
    error_code = 4010
    key = "unauthorized"
    default_message = "Unauthorized"
    meaning = "The token carries no `sub` claim"


class Forbidden(DomainError):
    http_status = 403
    error_code = 4003
    key = "forbidden"
    default_message = "无权访问"
    meaning = "Not allowed"


class FeatureDisabled(Forbidden):
    key = "feature_disabled"
    default_message = "功能已禁用"
    meaning = "The feature is switched off"


class PlanNotAllowed(Forbidden):
    key = "plan_not_allowed"
    default_message = "无权使用该功能"
    meaning = "The caller's plan may not use the feature"


class NotTaskOwner(Forbidden):
    key = "forbidden_task"
    default_message = "无权访问该任务"
    meaning = "The task belongs to someone else"


class QuotaInsufficient(DomainError):
    http_status = 403
    error_code = 1003
    key = "quota_insufficient"
    default_message = "配额不足，请充值"
    meaning = "The balance does not cover the images x the feature's cost"


# ---------------------------------------------------------------------- 404


class NotFound(DomainError):
    http_status = 404
    error_code = 4004
    key = "not_found"
    default_message = "资源不存在"
    meaning = "No such route"


class TaskNotFound(NotFound):
    key = "task_not_found"
    default_message = "任务不存在"
    meaning = "No such task"


class FeatureNotFound(NotFound):
    key = "feature_not_found"
    default_message = "功能不存在"
    meaning = "No such feature (or it was deleted)"


class WebhookNotFound(NotFound):
    key = "webhook_not_found"
    default_message = "Webhook不存在"
    meaning = "The caller has no webhook endpoint with this id"


class AccountNotFound(NotFound):
    key = "account_not_found"
    default_message = "账户不存在"
    meaning = "No account for this user (operators only: the API opens accounts at signup)"


# ---------------------------------------------------------------------- 409


class StateConflict(DomainError):
    http_status = 409
    error_code = 4009
    key = "state_conflict"
    default_message = "任务当前状态不允许该操作"
    meaning = "The task's state forbids the operation"


class TaskCancelled(StateConflict):
    key = "task_cancelled"
    default_message = "任务已取消，无法重试"
    meaning = "The task was cancelled, so its items cannot be retried"


class TaskFinished(StateConflict):
    key = "task_finished"
    default_message = "任务已结束，无法取消"
    meaning = "The task has already finished (or was cancelled)"


class TaskChanged(StateConflict):
    key = "task_changed"
    default_message = "任务状态已变化，请刷新后重试"
    meaning = "The task changed while the request ran; read it again"


class TaskExists(StateConflict):
    key = "task_exists"
    default_message = "任务已存在"
    meaning = "A task with the same id already exists"


class RequestInProgress(StateConflict):
    key = "request_in_progress"
    default_message = "相同Idempotency-Key的请求正在处理中"
    meaning = "A request with the same `Idempotency-Key` is still being processed"


class ConcurrentUpdate(StateConflict):
    key = "concurrent_update"
    default_message = "请求冲突，请稍后重试"
    meaning = "Contention on the account outlasted the retries; try again"


class AdjustmentAlreadyApplied(StateConflict):
    """The admin adjustment's request id is in the ledger already: it happened, once."""

    key = "adjustment_already_applied"
    default_message = "该调整已执行过"
    meaning = "An operator's adjustment with this request id was applied already"


# ---------------------------------------------------------------------- 429, 503


class RateLimited(DomainError):
    http_status = 429
    error_code = 4029
    key = "rate_limited"
    default_message = "请求过于频繁，请稍后再试"
    meaning = "Too many requests for this feature in the window; see `Retry-After`"

    def __init__(self, reset_at: int, remaining: int = 0) -> None:
        super().__init__()
        self.reset_at = reset_at
        self.remaining = remaining


class StartFailed(DomainError):
    """Processing could not be started; the charge has already been undone."""

    http_status = 503
    error_code = 5000
    key = "start_failed"
    default_message = "任务启动失败，配额已退还，请稍后重试"
    meaning = "Processing could not be started; the charge was undone, try again"


def error_types() -> Iterator[type[DomainError]]:
    """Every domain error type, DomainError itself first, then depth-first by declaration."""
    pending: list[type[DomainError]] = [DomainError]
    while pending:
        current = pending.pop(0)
        yield current
        pending[:0] = current.__subclasses__()
