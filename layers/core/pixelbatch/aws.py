"""boto3 clients built once per cold start. AWS_ENDPOINT_URL (read by boto3 itself) points
them at the local emulator; nothing here differs between AWS and local."""

from __future__ import annotations

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


@dataclass
class AwsClients:
    region: str | None = None

    @cached_property
    def dynamodb(self) -> Any:
        return boto3.resource("dynamodb", region_name=self.region, config=_CONFIG)

    @cached_property
    def s3(self) -> Any:
        return boto3.client("s3", region_name=self.region, config=_S3_CONFIG)

    @cached_property
    def events(self) -> Any:
        return boto3.client("events", region_name=self.region, config=_CONFIG)

    @cached_property
    def sqs(self) -> Any:
        return boto3.client("sqs", region_name=self.region, config=_CONFIG)

    @cached_property
    def sfn(self) -> Any:
        return boto3.client("stepfunctions", region_name=self.region, config=_CONFIG)


# Presigned URLs go to browsers: SigV4 on the regional virtual host
# <bucket>.s3.<region>.amazonaws.com. botocore's defaults sign for the global host
# s3.amazonaws.com, which answers a new bucket outside us-east-1 with a redirect that a CORS
# preflight cannot follow. An endpoint given by IP address (the local stack) stays path-style.
_S3_CONFIG = _CONFIG.merge(Config(
    signature_version="s3v4",
    s3={"addressing_style": "virtual", "us_east_1_regional_endpoint": "regional"},
))
