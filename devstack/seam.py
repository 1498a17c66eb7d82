"""The one place where moto is patched: Lambda invocations run the real handler in process.

Without Docker moto cannot run function code. ``LambdaFunction._invoke_lambda`` is the single
method through which every invocation goes (boto3 ``Invoke`` and the Step Functions interpreter,
which calls Lambda over HTTP), so replacing it is enough. Errors come back as the Python runtime's
error payload, so Step Functions ``Retry``/``Catch`` match them by ``errorType`` as on AWS.
"""

from __future__ import annotations

import inspect
import json
import threading
import time
import traceback
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from moto.awslambda.models import LambdaFunction

from devstack.handlers import HandlerLoadError, LambdaHandler, make_context, runtime_json
from devstack.workers import FunctionError, WorkerPool

__all__ = [
    "Invocation",
    "SeamError",
    "check_seam",
    "install",
    "installed",
    "invocation_count",
    "invocations",
    "peak_concurrency",
    "reset_records",
    "uninstall",
]

SEAM_OWNER = LambdaFunction
SEAM_NAME = "_invoke_lambda"
EXPECTED_PARAMETERS = ("self", "event")
EXPECTED_RETURN = "tuple[str, bool, str]"

HandlerLookup = Callable[[str], LambdaHandler]


class SeamError(RuntimeError):
    """moto no longer has the method the local stack replaces, or no longer calls it."""


@dataclass(frozen=True)
class Invocation:
    function_name: str
    request_id: str
    event: Any
    started_at: float
    duration_ms: float
    error_type: str | None


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lookup: HandlerLookup | None = None
        self.original: Any = None
        self.count = 0
        self.records: deque[Invocation] = deque(maxlen=10_000)  # bounded: dev servers run long
        self.in_flight: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()


_state = _State()


def check_seam() -> None:
    """Fail loudly if moto moved the seam: the attribute, its signature, or its only caller."""
    method = SEAM_OWNER.__dict__.get(SEAM_NAME)
    where = f"{SEAM_OWNER.__module__}.{SEAM_OWNER.__qualname__}.{SEAM_NAME}"
    if not callable(method):
        raise SeamError(f"{where} does not exist any more: re-pin moto or move the seam")
    if method is _seam_invoke:
        return
    signature = inspect.signature(method)
    names = tuple(signature.parameters)
    event = signature.parameters.get("event")
    if names != EXPECTED_PARAMETERS or event is None or event.default is not None:
        raise SeamError(f"{where} is now {signature}; the seam expects (self, event=None)")
    if str(signature.return_annotation).replace(" ", "") != EXPECTED_RETURN.replace(" ", ""):
        raise SeamError(f"{where} returns {signature.return_annotation!r}, not {EXPECTED_RETURN}")
    if f"self.{SEAM_NAME}(" not in inspect.getsource(SEAM_OWNER.invoke):
        raise SeamError(f"{SEAM_OWNER.__qualname__}.invoke no longer calls {SEAM_NAME}")


def install(lookup: HandlerLookup) -> None:
    """Route every moto Lambda invocation to ``lookup(function_name)``; idempotent."""
    check_seam()
    with _state.lock:
        if _state.original is None:
            _state.original = SEAM_OWNER.__dict__[SEAM_NAME]
            setattr(SEAM_OWNER, SEAM_NAME, _seam_invoke)
        _state.lookup = lookup


def uninstall() -> None:
    with _state.lock:
        if _state.original is not None:
            setattr(SEAM_OWNER, SEAM_NAME, _state.original)
        _state.original = None
        _state.lookup = None


def installed() -> bool:
    return SEAM_OWNER.__dict__.get(SEAM_NAME) is _seam_invoke


def invocation_count() -> int:
    return _state.count


def invocations(function_name: str | None = None) -> list[Invocation]:
    with _state.lock:
        records = list(_state.records)
    return [r for r in records if function_name is None or r.function_name == function_name]


def peak_concurrency(function_name: str) -> int:
    """The most invocations of ``function_name`` that ran at the same time."""
    return _state.peak[function_name]


def reset_records() -> None:
    with _state.lock:
        _state.count = 0
        _state.records.clear()
        _state.peak.clear()


def _seam_invoke(self: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
    """Replacement for ``LambdaFunction._invoke_lambda``: (payload, errored, logs)."""
    request_id = str(uuid.uuid4())
    name = self.function_name
    event = _decode_event(event)
    started, started_at = time.monotonic(), time.time()
    _enter(name)
    try:
        payload, error_type = _run(self, event, request_id)
    finally:
        _leave(name)
    elapsed = time.monotonic() - started
    # an environment in this process cannot be killed: a late result is replaced instead
    if error_type is None and elapsed > float(self.timeout):
        payload, error_type = _timeout_payload(request_id, float(self.timeout)), "Sandbox.Timedout"
    _record(Invocation(name, request_id, event, started_at, elapsed * 1000, error_type))
    return payload, error_type is not None, ""


def _decode_event(event: Any) -> Any:
    # moto passes the parsed JSON body, or the string "{}" when the body was empty
    if event is None:
        return {}
    if isinstance(event, str | bytes):
        try:
            return json.loads(event)
        except ValueError:
            return event
    return event


def _run(function: LambdaFunction, event: Any, request_id: str) -> tuple[str, str | None]:
    lookup = _state.lookup
    if lookup is None:
        raise SeamError("the seam is patched in but has no handler lookup")
    context = make_context(
        function.function_name,
        function.function_arn,
        int(function.memory_size),
        float(function.timeout),
        version=str(function.version),
        request_id=request_id,
    )
    try:
        handler = lookup(function.function_name)
        if isinstance(handler, WorkerPool):  # its process answers with the runtime's JSON
            return handler.invoke_raw(event, context), None
        result = handler(event, context)
    except FunctionError as exc:
        return exc.payload, exc.error_type
    except HandlerLoadError as exc:
        return _error_payload(exc.error_type, str(exc), request_id, []), exc.error_type
    except Exception as exc:
        error_type = type(exc).__name__
        frames = traceback.format_list(traceback.extract_tb(exc.__traceback__))
        return _error_payload(error_type, str(exc), request_id, frames), error_type
    try:
        return runtime_json(result), None
    except (TypeError, ValueError) as exc:
        error_type, message = "Runtime.MarshalError", f"Unable to marshal response: {exc}"
        return _error_payload(error_type, message, request_id, []), error_type


def _error_payload(error_type: str, message: str, request_id: str, stack: list[str]) -> str:
    return json.dumps(
        {
            "errorMessage": message,
            "errorType": error_type,
            "requestId": request_id,
            "stackTrace": stack,
        }
    )


def _timeout_payload(request_id: str, timeout: float) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    message = f"{now} {request_id} Task timed out after {timeout:.2f} seconds"
    return _error_payload("Sandbox.Timedout", message, request_id, [])


def _enter(name: str) -> None:
    with _state.lock:
        _state.count += 1
        _state.in_flight[name] += 1
        _state.peak[name] = max(_state.peak[name], _state.in_flight[name])


def _leave(name: str) -> None:
    with _state.lock:
        _state.in_flight[name] -= 1


def _record(invocation: Invocation) -> None:
    with _state.lock:
        _state.records.append(invocation)
