"""One Lambda execution environment: imports the handler once, then serves invocations.

Started by ``devstack.workers`` as its own OS process, with exactly the function's environment.
It uses only the standard library and is run as a script from this folder, so nothing of the
local stack is importable by the function, as on Lambda. Requests and replies are JSON frames
(4-byte big-endian length, then the bytes) on the two pipes named by DEVSTACK_RUNTIME_FDS;
stdout and stderr are the function's log, which gets the platform's REPORT line after each
invocation, as in CloudWatch.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import resource
import struct
import sys
import time
import traceback
from decimal import Decimal
from typing import Any, BinaryIO


class LambdaContext:
    """The attributes and method of the Python runtime's context object."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.function_name = fields["function_name"]
        self.function_version = fields["function_version"]
        self.invoked_function_arn = fields["invoked_function_arn"]
        self.memory_limit_in_mb = int(fields["memory_limit_in_mb"])
        self.aws_request_id = fields["aws_request_id"]
        self.log_group_name = fields["log_group_name"]
        self.log_stream_name = fields["log_stream_name"]
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + fields["remaining_ms"] / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _decimal(value: Any) -> Any:
    # the Lambda runtime's marshaller accepts Decimal (DynamoDB numbers) at any depth
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def error_payload(error_type: str, message: str, request_id: str, stack: list[str]) -> str:
    return json.dumps({"errorMessage": message, "errorType": error_type,
                       "requestId": request_id, "stackTrace": stack})


def read_frame(stream: BinaryIO) -> Any:
    header = stream.read(4)
    if len(header) < 4:
        return None  # the local stack went away: this environment ends
    (size,) = struct.unpack(">I", header)
    return json.loads(stream.read(size))


def write_frame(stream: BinaryIO, message: Any) -> None:
    data = json.dumps(message).encode()
    stream.write(struct.pack(">I", len(data)) + data)
    stream.flush()


def load_handler(spec: str) -> Any:
    module_name, _, attribute = spec.rpartition(".")
    module = importlib.import_module(module_name)
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise AttributeError(f"Handler '{attribute}' missing on module '{module_name}'")
    return handler


def invoke(handler: Any, request: dict[str, Any]) -> dict[str, Any]:
    context = LambdaContext(request["context"])
    try:
        result = handler(request["event"], context)
    except Exception as exc:
        frames = traceback.format_list(traceback.extract_tb(exc.__traceback__))
        error_type = type(exc).__name__
        return {"payload": error_payload(error_type, str(exc), context.aws_request_id, frames),
                "error_type": error_type}
    try:
        return {"payload": json.dumps(result, default=_decimal), "error_type": None}
    except (TypeError, ValueError) as exc:
        message = f"Unable to marshal response: {exc}"
        return {"payload": error_payload("Runtime.MarshalError", message,
                                         context.aws_request_id, []),
                "error_type": "Runtime.MarshalError"}


def peak_memory_mb() -> int:
    """This process's peak resident memory. getrusage's maximum is not it on Linux: it keeps
    the high-water mark of the process image before exec, the forking local stack's."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def report(request_id: str, duration_ms: float, memory_size_mb: int, peak_mb: int,
           init_ms: float | None) -> str:
    """The platform's REPORT line for one invocation."""
    line = (f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
            f"Billed Duration: {math.ceil(duration_ms)} ms\t"
            f"Memory Size: {memory_size_mb} MB\tMax Memory Used: {peak_mb} MB")
    return line if init_ms is None else f"{line}\tInit Duration: {init_ms:.2f} ms"


def out_of_memory(request_id: str) -> dict[str, Any]:
    """Lambda's reply for an environment that went past its MemorySize (Lambda kills it
    then; here the peak is read once the invocation is over)."""
    message = f"RequestId: {request_id} Error: Runtime exited with error: signal: killed"
    return {"payload": error_payload("Runtime.OutOfMemory", message, request_id, []),
            "error_type": "Runtime.OutOfMemory", "exited": True}


def serve(handler: Any, requests: BinaryIO, replies: BinaryIO, init_ms: float | None) -> None:
    memory_size_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") or 0)
    while (request := read_frame(requests)) is not None:
        started = time.perf_counter()
        request_id = request["context"]["aws_request_id"]
        reply = invoke(handler, request)
        duration_ms = (time.perf_counter() - started) * 1000
        peak_mb = peak_memory_mb()
        killed = bool(memory_size_mb) and peak_mb > memory_size_mb
        write_frame(replies, out_of_memory(request_id) if killed else reply)
        print(report(request_id, duration_ms, memory_size_mb, peak_mb, init_ms),
              file=sys.stderr, flush=True)
        if killed:
            return
        init_ms = None


def main() -> int:
    init_started = time.perf_counter()
    read_fd, write_fd = (int(fd) for fd in os.environ.pop("DEVSTACK_RUNTIME_FDS").split(","))
    requests, replies = os.fdopen(read_fd, "rb"), os.fdopen(write_fd, "wb")
    sys.path[0] = os.environ["LAMBDA_TASK_ROOT"]  # this folder is not the function's
    spec = os.environ["_HANDLER"]
    try:
        handler = load_handler(spec)
    except AttributeError as exc:
        write_frame(replies, {"init_error": "Runtime.HandlerNotFound", "message": str(exc)})
        return 1
    except Exception as exc:
        message = f"Unable to import module '{spec.rpartition('.')[0]}': {exc!r}"
        traceback.print_exc()
        write_frame(replies, {"init_error": "Runtime.ImportModuleError", "message": message})
        return 1
    write_frame(replies, {"ready": True})
    serve(handler, requests, replies, (time.perf_counter() - init_started) * 1000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
