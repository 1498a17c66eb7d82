"""Domain errors. Logic and data access raise these; api.http turns them into replies, once."""

from __future__ import annotations

from typing import ClassVar


class DomainError(Exception):
    http_status: ClassVar[int] = 500
    error_code: ClassVar[int] = 5000
    default_message: ClassVar[str] = "服务器内部错误"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class InvalidRequest(DomainError):
    http_status = 400
    error_code = 4001
    default_message = "请求参数无效"


class NotABatchTask(InvalidRequest):
    default_message = "该任务不是批量任务"


class NothingToDownload(InvalidRequest):
    default_message = "没有可下载的文件"


class NoFailedItems(InvalidRequest):
    default_message = "没有失败的子任务需要重试"


class Forbidden(DomainError):
    http_status = 403
    error_code = 4003
    default_message = "无权访问"


class FeatureDisabled(Forbidden):
    default_message = "功能已禁用"


class PlanNotAllowed(Forbidden):
    default_message = "无权使用该功能"


class NotTaskOwner(Forbidden):
    default_message = "无权访问该任务"


class QuotaInsufficient(DomainError):
    http_status = 403
    error_code = 1003
    default_message = "配额不足，请充值"


class NotFound(DomainError):
    http_status = 404
    error_code = 4004
    default_message = "资源不存在"


class TaskNotFound(NotFound):
    default_message = "任务不存在"


class FeatureNotFound(NotFound):
    default_message = "功能不存在"


class AccountNotFound(NotFound):
    default_message = "账户不存在"


class StateConflict(DomainError):
    http_status = 409
    error_code = 4009
    default_message = "任务当前状态不允许该操作"


class ConcurrentUpdate(StateConflict):
    default_message = "请求冲突，请稍后重试"


class AdjustmentAlreadyApplied(StateConflict):
    """The admin adjustment's request id is in the ledger already: it happened, once."""

    default_message = "该调整已执行过"


class RateLimited(DomainError):
    http_status = 429
    error_code = 4029
    default_message = "请求过于频繁，请稍后再试"

    def __init__(self, reset_at: int, remaining: int = 0) -> None:
        super().__init__()
        self.reset_at = reset_at
        self.remaining = remaining


class StartFailed(DomainError):
    """Processing could not be started; the charge has already been undone."""

    http_status = 503
    error_code = 5000
    default_message = "任务启动失败，配额已退还，请稍后重试"
