"""Load the real Lambda handlers in process, and give them a Lambda-like context.

Every function's handler file is called ``app.py``, so each one is imported from its path under
a module name of its own. Loading is lazy (the first call happens after the environment is set,
as a cold start would) and happens once per function, even with concurrent first calls.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

from devstack import powertools_threads
from devstack.iam import Role, role_for, roles_from_template
from devstack.iam_enforce import acting_as
from devstack.template import Function, Template, load_template

__all__ = [
    "HandlerLoadError",
    "HandlerRegistry",
    "LambdaContext",
    "LambdaHandler",
    "context_for",
    "ensure_layers_importable",
    "in_process_environments",
    "load_handler",
    "make_context",
    "runtime_json",
]

LambdaHandler = Callable[[Any, Any], Any]

REPO_TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"


class HandlerLoadError(RuntimeError):
    """The handler could not be imported; ``error_type`` is what the Lambda runtime reports."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass
class LambdaContext:
    """The attributes and method of the Python runtime's context object."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline_monotonic: float = field(repr=False)
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline_monotonic - time.monotonic()) * 1000))


def _decimal(value: Any) -> Any:
    # the Python runtime's marshaller accepts Decimal (DynamoDB numbers) at any depth
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def runtime_json(result: Any) -> str:
    """Serialise a handler result the way the Lambda Python runtime does."""
    return json.dumps(result, default=_decimal)


def make_context(
    function_name: str,
    invoked_function_arn: str,
    memory_size: int,
    timeout_seconds: float,
    version: str = "$LATEST",
    request_id: str | None = None,
) -> LambdaContext:
    today = datetime.now(UTC).strftime("%Y/%m/%d")
    return LambdaContext(
        function_name=function_name,
        function_version=version,
        invoked_function_arn=invoked_function_arn,
        memory_limit_in_mb=int(memory_size),
        aws_request_id=request_id or str(uuid.uuid4()),
        log_group_name=f"/aws/lambda/{function_name}",
        log_stream_name=f"{today}/[{version}]{uuid.uuid4().hex}",
        deadline_monotonic=time.monotonic() + float(timeout_seconds),
    )


def context_for(function: Function, request_id: str | None = None) -> LambdaContext:
    return make_context(
        function.name, function.arn, function.memory_size, function.timeout, request_id=request_id
    )


def ensure_layers_importable(template: Template) -> None:
    """Put the template's own Python layers on sys.path, as Lambda does with /opt/python."""
    for function in template.functions:
        for path in function.layer_paths:
            if str(path) not in sys.path and _has_python_code(path):
                sys.path.append(str(path))


def _has_python_code(path: Path) -> bool:
    if not path.is_dir():
        return False
    return any(
        entry.suffix == ".py" or (entry / "__init__.py").is_file() for entry in path.iterdir()
    )


EnvironmentFactory = Callable[[Function], LambdaHandler]


class HandlerRegistry:
    """Handlers of a template's functions, loaded on first use; overrides win over files.

    ``environments`` makes the execution environments of a function: by default in this
    process (for tests that reach into the handlers' modules), or one OS process each
    (``devstack.workers``), which is what the local stack uses."""

    def __init__(
        self, template: Template, overrides: Mapping[str, LambdaHandler] | None = None,
        environments: EnvironmentFactory | None = None,
    ) -> None:
        self.template = template
        self._environments = environments or EnvironmentPool
        self._lock = threading.Lock()
        self._loaded: dict[str, LambdaHandler] = {}
        self._overrides: dict[str, LambdaHandler] = {}
        for key, handler in (overrides or {}).items():
            self.override(key, handler)

    def function(self, key: str) -> Function:
        return self.template.function(key)

    def override(self, key: str, handler: LambdaHandler | None) -> None:
        """Serve ``key`` with ``handler`` instead of its file (None removes the override)."""
        logical_id = self.function(key).logical_id
        with self._lock:
            if handler is None:
                self._overrides.pop(logical_id, None)
            else:
                self._overrides[logical_id] = handler

    def get(self, key: str) -> LambdaHandler:
        function = self.function(key)
        with self._lock:  # one pool per function even when first calls race
            handler = self._overrides.get(function.logical_id)
            if handler is None:
                handler = self._loaded.get(function.logical_id)
            if handler is None:
                handler = self._loaded[function.logical_id] = self._environments(function)
        return handler

    def close(self) -> None:
        """Stop every execution environment (their processes, when they have them)."""
        with self._lock:
            loaded, self._loaded = dict(self._loaded), {}
        for pool in loaded.values():
            close = getattr(pool, "close", None)
            if callable(close):
                close()


class EnvironmentPool:
    """Execution environments inside this process, each a fresh import of the handler.

    Lambda runs one request at a time in an environment and starts another (a cold start) when
    all are busy, so module state is never shared by concurrent invocations. With ``role``,
    the calls of each invocation are authorized as that execution role's."""

    def __init__(self, function: Function, role: Role | None = None) -> None:
        powertools_threads.install()  # concurrent invocations share this process
        self._function = function
        self._role = role
        self._idle: list[LambdaHandler] = []
        self._started = 0
        self._lock = threading.Lock()
        self.warm()  # import errors surface on the first call, as a cold start's do

    def warm(self) -> None:
        self._release(self._start())

    @property
    def environments(self) -> int:
        return self._started

    def __call__(self, event: Any, context: Any) -> Any:
        handler = self._acquire()
        try:
            with acting_as(self._role):
                return handler(event, context)
        finally:
            self._release(handler)

    def _acquire(self) -> LambdaHandler:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._start()

    def _start(self) -> LambdaHandler:
        with self._lock:
            self._started += 1
            number = self._started
        with acting_as(self._role):  # module-level code may call AWS at cold start
            return _import_handler(self._function, number)

    def _release(self, handler: LambdaHandler) -> None:
        with self._lock:
            self._idle.append(handler)


def _module_name(function: Function, number: int) -> str:
    return f"_devstack_fn_{function.logical_id}_{number}"


def _import_handler(function: Function, number: int = 1) -> LambdaHandler:
    path = function.handler_file
    if not path.is_file():
        raise HandlerLoadError(
            "Runtime.ImportModuleError",
            f"Unable to import module '{path.stem}': no file {path} ({function.logical_id})",
        )
    module = _exec_module(_module_name(function, number), path)
    handler = getattr(module, function.handler_attribute, None)
    if not callable(handler):
        raise HandlerLoadError(
            "Runtime.HandlerNotFound",
            f"Handler '{function.handler_attribute}' missing on module '{path.stem}' ({path})",
        )
    return handler


def _exec_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise HandlerLoadError("Runtime.ImportModuleError", f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pydantic look their module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]  # like a failed init: the next call tries again
        raise HandlerLoadError(
            "Runtime.ImportModuleError", f"Unable to import module '{path.stem}': {exc!r}"
        ) from exc
    return module


_default_registries: dict[Path, HandlerRegistry] = {}
_default_lock = threading.Lock()


def load_handler(key: str, template_path: Path | None = None) -> LambdaHandler:
    """The handler of a function named by logical id or CodeUri, e.g. ``"functions/finalize"``."""
    path = (template_path or REPO_TEMPLATE).resolve()
    with _default_lock:
        registry = _default_registries.get(path)
        if registry is None:
            template = load_template(path)
            registry = HandlerRegistry(template, environments=in_process_environments(template))
            _default_registries[path] = registry
    return registry.get(key)


def in_process_environments(template: Template) -> EnvironmentFactory:
    """Environments in this process whose calls are authorized as their function's role."""
    roles = roles_from_template(template)

    def environments(function: Function) -> LambdaHandler:
        return EnvironmentPool(function, role_for(roles, function.logical_id))

    return environments
