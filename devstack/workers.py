"""Lambda execution environments as OS processes: one process per environment, as on AWS.

Each function gets a pool. An invocation takes an idle environment or starts one (a cold
start) while fewer than the function's concurrency limit exist, else waits for one. An
environment serves one invocation at a time, keeps its module state between invocations, has
a /tmp of its own, and sees exactly its function's environment variables from the template
plus the local stack's endpoint and its role's credentials. An invocation that runs past the
function's Timeout has its process killed, and the caller gets ``Sandbox.Timedout``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devstack.template import Function

__all__ = [
    "BACKGROUND_NICE",
    "DEFAULT_CONCURRENCY",
    "FunctionError",
    "WorkerPool",
    "runtime_environment",
]

log = logging.getLogger("devstack.workers")

BOOTSTRAP = Path(__file__).resolve().parent / "lambda_runtime" / "bootstrap.py"
DEFAULT_CONCURRENCY = 10  # environments per function when the template reserves none
# On AWS every environment has a CPU share of its own; here they share a few cores. Functions no
# route invokes (state machine steps, schedules) run on the CPU time that the API and the
# emulator leave over (SCHED_IDLE; nice 19 besides), so image work cannot slow the API, as it
# cannot on AWS.
BACKGROUND_NICE = 19
# Lambda gives init 10 s, then retries it within the invocation's own timeout
INIT_TIMEOUT_SECONDS = 10.0
_LOG_FD = 2  # the function's log goes to the local stack's stderr, as to CloudWatch
PASSED_THROUGH = ("PATH", "LANG", "LC_ALL", "SYSTEMROOT", "POWERTOOLS_METRICS_DISABLED")


class FunctionError(Exception):
    """The invocation failed; ``payload`` is the runtime's error document."""

    def __init__(self, error_type: str, payload: str) -> None:
        super().__init__(f"{error_type}: {payload[:500]}")
        self.error_type = error_type
        self.payload = payload


# What the local runtime sets beyond the template (as it sets AWS_ENDPOINT_URL): webhook
# receivers on this machine (http://127.0.0.1) are allowed; on AWS only public https ones are.
LOCAL_RUNTIME_SETTINGS = {"WEBHOOK_LOOPBACK_RECEIVERS": "true"}


def runtime_environment(function: Function, endpoint_url: str, region: str,
                        credentials: Mapping[str, str]) -> dict[str, str]:
    """What a Lambda environment of ``function`` sees, pointed at the local stack."""
    env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    env.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    env.update({
        **function.environment,
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        **credentials,
        "AWS_LAMBDA_FUNCTION_NAME": function.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.name}",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.runtime}",
        "LAMBDA_TASK_ROOT": str(function.code_uri),
        "_HANDLER": function.handler,
        "PYTHONPATH": os.pathsep.join(str(path) for path in function.layer_paths),
        "PYTHONUNBUFFERED": "1",
        "TZ": ":UTC",
        "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon locally
        "NO_PROXY": "127.0.0.1,localhost",
        **LOCAL_RUNTIME_SETTINGS,
    })
    return env


class _Environment:
    """One execution environment: a process and the two pipes to it."""

    def __init__(self, function: Function, env: Mapping[str, str], background: bool) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"lambda-{function.logical_id}-"))
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, str(BOOTSTRAP)],
                env={**env, "TMPDIR": str(self.tmp), "HOME": str(self.tmp),
                     "DEVSTACK_RUNTIME_FDS": f"{to_child_r},{from_child_w}"},
                cwd=function.code_uri, pass_fds=(to_child_r, from_child_w),
                stdin=subprocess.DEVNULL, stdout=_LOG_FD, stderr=_LOG_FD,
            )
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        if background:
            _run_in_background(self.process.pid)

    def init(self, timeout: float) -> None:
        reply = self._receive(time.monotonic() + timeout)
        if reply is None:
            message = (f"init did not finish within {timeout:.0f} s"
                       if self.process.poll() is None else "the runtime exited during init")
            raise _InitError("Runtime.ExitError", message)
        if "init_error" in reply:
            raise _InitError(str(reply["init_error"]), str(reply.get("message")))

    def invoke(self, request: Mapping[str, Any], timeout: float) -> dict[str, Any] | None:
        """The reply, or None when the deadline passed (the caller kills the process)."""
        self._send(request)
        return self._receive(time.monotonic() + timeout)

    def close(self) -> None:
        for fd in (self._to_child, self._from_child):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _send(self, message: Mapping[str, Any]) -> None:
        data = json.dumps(message).encode()
        view = memoryview(struct.pack(">I", len(data)) + data)
        while view:
            written = os.write(self._to_child, view)
            view = view[written:]

    def _receive(self, deadline: float) -> dict[str, Any] | None:
        header = self._read(4, deadline)
        if header is None:
            return None
        body = self._read(struct.unpack(">I", header)[0], deadline)
        return json.loads(body) if body is not None else None

    def _read(self, size: int, deadline: float) -> bytes | None:
        chunks: list[bytes] = []
        while size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._from_child], [], [], remaining)[0]:
                return None
            chunk = os.read(self._from_child, min(size, 1 << 20))
            if not chunk:
                return None  # the process died
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)


def _run_in_background(pid: int) -> None:
    os.setpriority(os.PRIO_PROCESS, pid, BACKGROUND_NICE)
    if hasattr(os, "SCHED_IDLE"):  # Linux
        os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))


class _InitError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


class WorkerPool:
    """The execution environments of one function."""

    def __init__(self, function: Function, env: Mapping[str, str],
                 concurrency: int = DEFAULT_CONCURRENCY, background: bool = False) -> None:
        self.function = function
        self._env = dict(env)
        self._concurrency = concurrency
        self._background = background
        self._idle: list[_Environment] = []
        self._count = 0
        self._started = 0
        self._closed = False
        self._available = threading.Condition()

    @property
    def environments(self) -> int:
        """How many environments were started so far (cold starts)."""
        return self._started

    def __call__(self, event: Any, context: Any) -> Any:
        return json.loads(self.invoke_raw(event, context))

    def invoke_raw(self, event: Any, context: Any) -> str:
        """The function's JSON result; raises FunctionError when the invocation failed."""
        request_id = str(context.aws_request_id)
        environment = self._acquire(request_id)
        request = {"event": event, "context": _context_fields(context, self.function)}
        reply = environment.invoke(request, self.function.timeout)
        if reply is None:
            self._discard(environment)
            raise FunctionError("Sandbox.Timedout",
                                _timeout_payload(request_id, self.function.timeout))
        if reply.get("exited"):
            self._discard(environment)  # the runtime ended it (out of memory)
        else:
            self._release(environment)
        if reply.get("error_type"):
            raise FunctionError(str(reply["error_type"]), str(reply["payload"]))
        return str(reply["payload"])

    def close(self) -> None:
        with self._available:
            self._closed = True
            idle, self._idle = self._idle, []
            self._available.notify_all()
        for environment in idle:
            environment.close()

    def _acquire(self, request_id: str) -> _Environment:
        with self._available:
            while not self._idle and self._count >= self._concurrency and not self._closed:
                self._available.wait()
            if self._closed:
                raise FunctionError("ServiceException", _error("ServiceException",
                                                               "the local stack stopped",
                                                               request_id))
            if self._idle:
                return self._idle.pop()
            self._count += 1
            self._started += 1
        return self._start(request_id)

    def _start(self, request_id: str) -> _Environment:
        environment: _Environment | None = None
        try:
            environment = _Environment(self.function, self._env, self._background)
            environment.init(max(INIT_TIMEOUT_SECONDS, float(self.function.timeout)))
            return environment
        except _InitError as exc:
            log.error("%s: %s: %s", self.function.logical_id, exc.error_type, exc)
            self._discard(environment)
            raise FunctionError(exc.error_type, _error(exc.error_type, str(exc), request_id)
                                ) from None
        except BaseException:
            self._discard(environment)
            raise

    def _release(self, environment: _Environment) -> None:
        with self._available:
            if self._closed:
                self._count -= 1
                environment.close()
            else:
                self._idle.append(environment)
            self._available.notify()

    def _discard(self, environment: _Environment | None) -> None:
        if environment is not None:
            environment.close()
        with self._available:
            self._count -= 1
            self._available.notify()


def _context_fields(context: Any, function: Function) -> dict[str, Any]:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return {
        "function_name": getattr(context, "function_name", function.name),
        "function_version": getattr(context, "function_version", "$LATEST"),
        "invoked_function_arn": getattr(context, "invoked_function_arn", function.arn),
        "memory_limit_in_mb": getattr(context, "memory_limit_in_mb", function.memory_size),
        "aws_request_id": str(context.aws_request_id),
        "log_group_name": getattr(context, "log_group_name", f"/aws/lambda/{function.name}"),
        "log_stream_name": getattr(context, "log_stream_name", "local"),
        "remaining_ms": remaining() if callable(remaining) else function.timeout * 1000,
    }


def _error(error_type: str, message: str, request_id: str) -> str:
    return json.dumps({"errorMessage": message, "errorType": error_type,
                       "requestId": request_id, "stackTrace": []})


def _timeout_payload(request_id: str, timeout: float) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    message = f"{now} {request_id} Task timed out after {timeout:.2f} seconds"
    return _error("Sandbox.Timedout", message, request_id)
