"""Configuration read once from the environment at cold start and passed down explicitly."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _FromEnvironment(BaseModel):
    """Fields are read from the upper-case variables of the same name."""

    model_config = ConfigDict(frozen=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        env = os.environ if environ is None else environ
        values = {name: env[name.upper()] for name in cls.model_fields if name.upper() in env}
        return cls.model_validate(values)


class AccountSettings(_FromEnvironment):
    """What the account lifecycle needs (the signup trigger and the admin CLI): just the two
    money tables and the size of the signup grant."""

    accounts_table: str
    ledger_table: str
    signup_grant_quota: int = Field(default=0, ge=0)


class Settings(_FromEnvironment):
    """Every resource name comes from the template's environment; none has a silent default."""

    accounts_table: str
    features_table: str
    pipelines_table: str
    tasks_table: str
    ledger_table: str
    rate_limit_table: str
    idempotency_table: str
    uploads_bucket: str
    outputs_bucket: str
    state_machine_arn: str | None = None
    event_bus_name: str = "default"
    image_url_allowlist: tuple[str, ...] = ()
    stage: str = "dev"
    presign_ttl_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    max_upload_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    stuck_after_seconds: int = Field(default=900, ge=60)
    # Task rows expire (DynamoDB TTL) at the age the outputs bucket deletes their objects.
    task_retention_days: int = Field(default=30, ge=1)
    # Webhooks: only the functions that register, announce or deliver them name these.
    webhooks_table: str | None = None
    webhook_queue_url: str | None = None
    # Set by the local stack's runtime only: receivers at http://127.0.0.1 are allowed too.
    webhook_loopback_receivers: bool = False

    @field_validator("image_url_allowlist", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(host.strip().lower() for host in value.split(",") if host.strip())
        return value
