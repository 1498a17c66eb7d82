"""boto3 clients, each created on first use and then kept for the life of the execution
environment. AWS_ENDPOINT_URL (read by boto3 itself) points them at the local emulator; nothing
here differs between AWS and local."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 4},
    connect_timeout=3,
    read_timeout=20,
    max_pool_connections=32,
)
# Presigned URLs go to browsers: SigV4 on the regional virtual host
# <bucket>.s3.<region>.amazonaws.com. botocore's defaults sign for the global host
# s3.amazonaws.com, which answers a new bucket outside us-east-1 with a redirect that a CORS
# preflight cannot follow. An endpoint given by IP address (the local stack) stays path-style.
_S3_CONFIG = _CONFIG.merge(Config(
    signature_version="s3v4",
    s3={"addressing_style": "virtual", "us_east_1_regional_endpoint": "regional"},
))
# Clients are thread-safe once made, boto3 sessions are not: one client is made at a time.
_MAKING = threading.Lock()


@dataclass
class AwsClients:
    region: str | None = None

    @cached_property
    def dynamodb(self) -> Any:
        session = self._session
        with _MAKING:
            return session.resource("dynamodb", region_name=self.region, config=_CONFIG)

    @cached_property
    def s3(self) -> Any:
        return self._client("s3", _S3_CONFIG)

    @cached_property
    def events(self) -> Any:
        return self._client("events", _CONFIG)

    @cached_property
    def sqs(self) -> Any:
        return self._client("sqs", _CONFIG)

    @cached_property
    def sfn(self) -> Any:
        return self._client("stepfunctions", _CONFIG)

    @cached_property
    def _session(self) -> boto3.session.Session:
        with _MAKING:
            return boto3.session.Session()

    def _client(self, service: str, config: Config) -> Any:
        session: Any = self._session
        with _MAKING:
            return session.client(service, region_name=self.region, config=config)
