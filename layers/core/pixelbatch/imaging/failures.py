"""Per-image failures with stable codes that the API shows to users."""

from __future__ import annotations

# code -> user-facing message; the codes are part of the API contract, never rename them
MESSAGES: dict[str, str] = {
    "not_an_image": "图片格式不支持",
    "unsupported_format": "图片格式不支持",
    "too_large": "图片文件过大",
    "too_many_pixels": "图片像素过多",
    "corrupt_image": "图片已损坏，无法解码",
    "timeout": "下载图片超时",
    "fetch_failed": "下载图片失败",
    "not_found": "图片不存在",
    "blocked_destination": "不允许访问该地址",
    "invalid_input_url": "图片地址无效",
    "invalid_parameters": "处理参数无效",
}


class ItemFailure(Exception):
    """An image that cannot be processed; stable code, readable message, whether retrying can help.

    ``detail`` is for logs only (English, may name internals); ``message`` is shown to users.
    """

    def __init__(self, code: str, message: str, *, retryable: bool, detail: str = "") -> None:
        super().__init__(f"{code}: {detail or message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.detail = detail

    @classmethod
    def of(cls, code: str, *, retryable: bool = False, detail: str = "") -> ItemFailure:
        """Build a failure with the standard message for ``code``."""
        return cls(code, MESSAGES[code], retryable=retryable, detail=detail)

    def __reduce__(self) -> tuple[object, ...]:
        # keyword-only args break default exception pickling (multiprocessing, Lambda wrappers)
        return (_rebuild, (self.code, self.message, self.retryable, self.detail))


def _rebuild(code: str, message: str, retryable: bool, detail: str) -> ItemFailure:
    return ItemFailure(code, message, retryable=retryable, detail=detail)
