"""Run moto in server mode and build every resource of template.yaml in it.

The stack owns process-wide state (environment variables, moto's config, the seam), so it
records what it changed and puts it back in :meth:`LocalStack.stop`; tests can build one and
leave the interpreter as they found it.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import socket
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
from botocore.config import Config
from moto.core.config import default_user_config
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.server import ThreadedMotoServer

from devstack import dynamodb_lock, resources, seam, sfn_credentials, sfn_fix
from devstack.handlers import REPO_TEMPLATE, HandlerRegistry, LambdaHandler
from devstack.handlers import ensure_layers_importable as _ensure_layers_importable
from devstack.iam import Role, role_for, roles_from_template
from devstack.iam_enforce import IAM_RECORD_VARIABLE, Authorizer, IamMiddleware
from devstack.scheduler import Scheduler
from devstack.serving import PooledWSGIServer
from devstack.sqs_poller import QueuePoller
from devstack.template import Function, Naming, Schedule, Template, TemplateError, load_template
from devstack.workers import (
    DEFAULT_CONCURRENCY,
    LOCAL_RUNTIME_SETTINGS,
    WorkerPool,
    runtime_environment,
)

__all__ = ["LocalStack", "SeedUnavailable", "StackConfig", "process_environment"]

log = logging.getLogger("devstack")

DEFAULT_MOTO_PORT = 4566
SEED_MODULE = "pixelbatch.seed"
SFN_EXECUTION_CONFIG = {"stepfunctions": {"execute_state_machine": True}}
# a developer's profile would point boto3 at a real account's settings
UNSET_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")


class SeedUnavailable(RuntimeError):
    """The core package's seed module (or the function asked for) is not there yet."""


@dataclass(frozen=True)
class StackConfig:
    template_path: Path = REPO_TEMPLATE
    host: str = "127.0.0.1"
    moto_port: int = DEFAULT_MOTO_PORT  # 0 picks a free port
    naming: Naming = field(default_factory=Naming)
    parameter_overrides: Mapping[str, str] = field(default_factory=dict)
    catalog_dir: Path | None = REPO_TEMPLATE.parent / "catalog"
    seed: bool = True
    schedule_scale: float | None = 1.0  # None: Schedule events never fire
    poll_queues: bool = True  # False: SQS event sources are not polled


def process_environment(template: Template, endpoint_url: str, moto_port: int) -> dict[str, str]:
    """What in-process handlers see: AWS settings aimed at moto plus the template's variables."""
    env = {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_DEFAULT_REGION": template.naming.region,
        "AWS_REGION": template.naming.region,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "MOTO_PORT": str(moto_port),  # moto's Step Functions calls Lambda at localhost:$MOTO_PORT
        "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon locally
        "POWERTOOLS_METRICS_DISABLED": os.environ.get("POWERTOOLS_METRICS_DISABLED", "true"),
        "NO_PROXY": ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1,localhost"])),
        **LOCAL_RUNTIME_SETTINGS,
    }
    return {**template.environment(), **env}


class LocalStack:
    """moto server + the template's resources + the seam; use as a context manager."""

    def __init__(
        self,
        config: StackConfig | None = None,
        handler_overrides: Mapping[str, LambdaHandler] | None = None,
    ) -> None:
        self.config = config or StackConfig()
        self.template = load_template(
            self.config.template_path, self.config.naming, self.config.parameter_overrides
        )
        self.roles = roles_from_template(self.template)
        record = os.environ.get(IAM_RECORD_VARIABLE)
        self.authorizer = Authorizer(self.roles.values(), self.template.naming.region,
                                     self.template.naming.account_id,
                                     Path(record) if record else None)
        self.registry = HandlerRegistry(self.template, handler_overrides, self._worker_pool)
        self.moto_port = 0
        self.startup_seconds = 0.0
        self._server: _IamMotoServer | None = None
        self._scheduler: Scheduler | None = None
        self._poller: QueuePoller | None = None
        self._saved_env: dict[str, str | None] = {}
        self._saved_sfn_config: Any = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.config.host}:{self.moto_port}"

    @property
    def state_machine_arns(self) -> dict[str, str]:
        return {machine.logical_id: machine.arn for machine in self.template.state_machines}

    def client(self, service: str, config: Config | None = None) -> Any:
        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.endpoint_url,
            region_name=self.template.naming.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=config,
        )

    # ------------------------------------------------------------ lifecycle

    def start(self) -> LocalStack:
        started = time.perf_counter()
        self._start_server()
        try:
            self._apply_environment()
            self._enable_state_machine_execution()
            dynamodb_lock.install()  # Map iterations write concurrently; moto is not atomic
            sfn_fix.install()  # a state machine must be able to run more than once
            sfn_credentials.install({role.arn: role.credentials for role in self.roles.values()})
            seam.install(self.registry.get)
            _ensure_layers_importable(self.template)
            self._create_resources()
            if self.config.seed:
                self.seed()
            self._start_scheduler()
            self._start_pollers()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.perf_counter() - started
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        if self._scheduler is not None:
            self._scheduler.stop()
            self._scheduler = None
        if self._poller is not None:
            self._poller.stop()
            self._poller = None
        seam.uninstall()
        self.registry.close()
        sfn_credentials.uninstall()
        sfn_fix.uninstall()
        # moto's backends are process-global: leave them empty for whoever comes next
        with contextlib.suppress(OSError):
            self._post("/moto-api/reset", None)
        self._server.stop()
        self._server = None
        if self._saved_sfn_config is not None:
            default_user_config["stepfunctions"] = self._saved_sfn_config
        self._restore_environment()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ steps

    def _start_server(self) -> None:
        if default_user_config.get("lambda", {}).get("use_docker") is False:
            # the "simple" Lambda backend answers canned results and never reaches the seam
            raise seam.SeamError('moto config {"lambda": {"use_docker": false}} bypasses the seam')
        _ensure_port_free(self.config.host, self.config.moto_port)
        self._server = _IamMotoServer(self.authorizer, self.config.host, self.config.moto_port)
        self._server.start()
        self.moto_port = self._server.get_host_and_port()[1]

    def _apply_environment(self) -> None:
        env = process_environment(self.template, self.endpoint_url, self.moto_port)
        for name in (*env, *UNSET_VARIABLES):
            self._saved_env.setdefault(name, os.environ.get(name))
        for name in UNSET_VARIABLES:
            os.environ.pop(name, None)
        os.environ.update(env)

    def _restore_environment(self) -> None:
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()

    def _enable_state_machine_execution(self) -> None:
        self._saved_sfn_config = dict(default_user_config.get("stepfunctions", {}))
        self._post("/moto-api/config", SFN_EXECUTION_CONFIG)
        # GET /moto-api/config does not report "stepfunctions"; the server shares our process
        if not default_user_config.get("stepfunctions", {}).get("execute_state_machine"):
            raise RuntimeError("moto did not accept the Step Functions execution config")

    def _post(self, path: str, body: Any) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        request = urllib.request.Request(self.endpoint_url + path, data=data, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def _create_resources(self) -> None:
        template, region = self.template, self.template.naming.region
        iam = self.client("iam")
        for role in self.roles.values():
            resources.create_role(iam, role.name)
        dynamodb, s3 = self.client("dynamodb"), self.client("s3")
        for table in template.tables:
            resources.create_table(dynamodb, table)
        for bucket in template.buckets:
            resources.create_bucket(s3, bucket, region)
        resources.create_queues(self.client("sqs"), template.queues)
        lambda_ = self.client("lambda")
        for function in template.functions:
            resources.create_function(lambda_, function, self.role(function.logical_id).arn)
        sfn = self.client("stepfunctions")
        for machine in template.state_machines:
            resources.create_state_machine(sfn, machine, self.role(machine.logical_id).arn)

    def role(self, logical_id: str) -> Role:
        """The execution role of a function or state machine."""
        return role_for(self.roles, logical_id)

    def _worker_pool(self, function: Function) -> LambdaHandler:
        credentials = self.role(function.logical_id).credentials.environment()
        env = runtime_environment(function, self.endpoint_url, self.template.naming.region,
                                  credentials)
        return WorkerPool(function, env, function.reserved_concurrency or DEFAULT_CONCURRENCY,
                          background=not function.routes)

    def _start_scheduler(self) -> None:
        if self.config.schedule_scale is None:
            return
        self._scheduler = Scheduler(
            self.template.schedules, self.invoke_scheduled, self.template.naming,
            self.config.schedule_scale,
        ).start()

    def _start_pollers(self) -> None:
        if not self.config.poll_queues or not self.template.queue_sources:
            return
        self._poller = QueuePoller(
            self.template.queue_sources, self.template.queues, self.template.function,
            self._sqs_as_role, self.invoke_for_event_source, self.template.naming.region,
        ).start()

    def _sqs_as_role(self, function_id: str) -> Any:
        """An SQS client signing with the function's execution role, as the mapping does."""
        credentials = self.role(function_id).credentials
        return boto3.client(
            "sqs", endpoint_url=self.endpoint_url, region_name=self.template.naming.region,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=credentials.session_token,
        )

    def invoke_for_event_source(self, function: Function, qualifier: str | None,
                                payload: str) -> tuple[str | None, bytes]:
        """What the event source mapping does: a synchronous invocation through moto's Lambda."""
        wait = Config(read_timeout=function.timeout + 30, retries={"total_max_attempts": 1})
        extra = {"Qualifier": qualifier} if qualifier else {}
        reply = self.client("lambda", wait).invoke(
            FunctionName=function.name, InvocationType="RequestResponse", Payload=payload,
            **extra,
        )
        return reply.get("FunctionError"), reply["Payload"].read()

    def invoke_scheduled(self, schedule: Schedule, payload: str) -> None:
        """What EventBridge does: an asynchronous invocation through moto's Lambda."""
        function = self.template.function(schedule.function_id)
        # moto runs "Event" invocations before it answers: wait as long as the function may run
        wait = Config(read_timeout=function.timeout + 30, retries={"total_max_attempts": 1})
        lambda_ = self.client("lambda", wait)
        reply = lambda_.invoke(FunctionName=function.name, InvocationType="Event", Payload=payload)
        if reply.get("FunctionError"):
            log.warning("scheduled %s.%s: %s", schedule.function_id, schedule.event_id,
                        reply["Payload"].read().decode(errors="replace"))

    # ------------------------------------------------------------ seeding and dev users

    def seed(self) -> None:
        """Load the catalog through the core package's seeder, if it and the catalog exist."""
        catalog = self.config.catalog_dir
        if catalog is None or not catalog.is_dir():
            log.warning("no catalog directory at %s: tables start empty", catalog)
            return
        try:
            seed_catalog = _seed_function("seed_catalog")
        except SeedUnavailable as exc:
            log.warning("%s: the catalog is not seeded", exc)
            return
        env = self.template.environment()
        missing = sorted({"FEATURES_TABLE", "PIPELINES_TABLE"} - set(env))
        if missing:
            raise TemplateError(f"the functions' environment lacks {missing}: cannot seed")
        seed_catalog(catalog, env["FEATURES_TABLE"], env["PIPELINES_TABLE"])

    def reset_account(self, user_id: str, quota: int, plan: str) -> None:
        _seed_function("reset_account")(user_id, quota, plan)


def _ensure_port_free(host: str, port: int) -> None:
    # ThreadedMotoServer waits forever for a server thread that died on "address in use"
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OSError(f"cannot serve moto on {host}:{port}: {exc.strerror}") from exc


def _seed_module() -> ModuleType:
    try:
        return importlib.import_module(SEED_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name not in {SEED_MODULE, SEED_MODULE.partition(".")[0]}:
            raise  # the module exists but one of its own imports is broken
        raise SeedUnavailable(f"{SEED_MODULE} is not importable ({exc})") from exc


def _seed_function(name: str) -> Callable[..., None]:
    function = getattr(_seed_module(), name, None)
    if not callable(function):
        raise SeedUnavailable(f"{SEED_MODULE}.{name} does not exist")
    return function


def configure_logging() -> None:
    """Readable stderr logs; werkzeug would otherwise log every moto request."""
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.WARNING)


class _RememberingDispatcher(DomainDispatcherApplication):
    """moto's dispatcher, remembering which backend serves a host: moto otherwise lists its
    package directory on disk for every request, under a lock that every request shares."""

    MAX_HOSTS = 4096

    def __init__(self, create_app: Callable[[Any], Any]) -> None:
        super().__init__(create_app)
        self._backends: dict[str | None, Any] = {}

    def get_backend_for_host(self, host: str | None) -> Any:
        if host not in self._backends:
            if len(self._backends) >= self.MAX_HOSTS:
                self._backends.clear()
            self._backends[host] = super().get_backend_for_host(host)
        return self._backends[host]


class _IamMotoServer(ThreadedMotoServer):
    """moto's threaded server with IAM checked in front of every service."""

    def __init__(self, authorizer: Authorizer, host: str, port: int) -> None:
        super().__init__(ip_address=host, port=port, verbose=False)
        self._authorizer = authorizer

    def _server_entry(self) -> None:
        app = IamMiddleware(_RememberingDispatcher(create_backend_app), self._authorizer)
        self._server = PooledWSGIServer(self._ip_address, self._port, app, "devstack-moto")
        self._server_ready_event.set()
        self._server.serve_forever()

    def stop(self) -> None:
        server = self._server
        super().stop()
        if server is not None:
            server.server_close()  # the port and the request threads, which moto leaves open
