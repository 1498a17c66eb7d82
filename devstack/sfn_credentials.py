"""Step Functions calls Lambda with the state machine's execution role, as on AWS.

moto 5.2.1's interpreter makes its service calls through ``boto_client_for`` with the fixed
key "ak", although it passes the role it evaluated for the state (the execution's role, or a
state's ``Credentials``). Signing with that role's credentials instead lets the local stack's
IAM check decide the call against the state machine's own policies.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from moto.core.models import botocore_stubber
from moto.settings import moto_server_port
from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import TimeoutSeconds
from moto.stepfunctions.parser.asl.utils import boto_client as boto_client_module

from devstack.iam import Credentials

__all__ = ["install", "uninstall"]

_PARSER_PACKAGE = "moto.stepfunctions.parser"
_ORIGINAL = boto_client_module.boto_client_for
_lock = threading.Lock()
_by_role_arn: dict[str, Credentials] = {}


def _client_for(region: str, service: str, state_credentials: Any = None) -> BaseClient:
    role_arn = getattr(state_credentials, "role_arn", None)
    credentials = _by_role_arn.get(str(role_arn)) if role_arn else None
    if credentials is None:
        return _ORIGINAL(region, service, state_credentials)
    endpoint = {} if botocore_stubber.enabled else {
        "endpoint_url": f"http://localhost:{moto_server_port()}"}
    return boto3.client(  # type: ignore[call-overload]
        service,
        region_name=region,
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token,
        # what moto's own client uses: the interpreter does its own retrying
        config=Config(parameter_validation=False,
                      retries={"max_attempts": 0, "total_max_attempts": 1},
                      connect_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
                      read_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS),
        **endpoint,
    )


def install(credentials_by_role_arn: Mapping[str, Credentials]) -> None:
    with _lock:
        _by_role_arn.clear()
        _by_role_arn.update(credentials_by_role_arn)
        for module in _parser_modules():
            if getattr(module, "boto_client_for", None) is _ORIGINAL:
                module.boto_client_for = _client_for


def uninstall() -> None:
    with _lock:
        _by_role_arn.clear()
        for module in _parser_modules():
            if getattr(module, "boto_client_for", None) is _client_for:
                module.boto_client_for = _ORIGINAL


def _parser_modules() -> list[Any]:
    # the interpreter's modules import the function by name, each keeping its own reference
    import moto.stepfunctions.parser.asl.component.state.exec.state_task.lambda_eval_utils  # noqa: F401

    return [module for name, module in list(sys.modules.items())
            if name.startswith(_PARSER_PACKAGE) and module is not None]
