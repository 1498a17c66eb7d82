"""Configuration read once from the environment at cold start and passed down explicitly.

Plain frozen dataclasses rather than pydantic models: importing pydantic costs a function about
half of a bare `import boto3, aws_lambda_powertools`, and these checks are few (required names,
integer bounds, a host list, a flag)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, Self

MAX_UPLOAD_BYTES = 25 * 1024 * 1024
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


class SettingsError(ValueError):
    """The environment lacks a variable the function needs, or holds one it cannot use."""


def _parse_int(raw: str) -> int:
    return int(raw.strip())


def _parse_bool(raw: str) -> bool:
    word = raw.strip().lower()
    if word not in _TRUE | _FALSE:
        raise ValueError("not a boolean")
    return word in _TRUE


def _parse_hosts(raw: str) -> tuple[str, ...]:
    return tuple(host.strip().lower() for host in raw.split(",") if host.strip())


# Field annotations (strings, as `from __future__ import annotations` leaves them) to parsers.
_PARSERS: dict[str, Callable[[str], Any]] = {
    "str": str, "str | None": str, "int": _parse_int, "bool": _parse_bool,
    "tuple[str, ...]": _parse_hosts,
}


def _bounded(default: int, *, low: int, high: int | None = None) -> Any:
    return field(default=default, metadata={"low": low, "high": high})


@dataclass(frozen=True)
class _FromEnvironment:
    """Fields are read from the upper-case variables of the same name."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Every problem of the environment in one error, so one deploy fixes them all."""
        env = os.environ if environ is None else environ
        values, problems = _read(fields(cls), env)
        missing = [spec.name.upper() for spec in fields(cls)
                   if _required(spec) and spec.name not in values]
        if missing:
            problems.append(f"missing environment variables: {', '.join(missing)}")
        if problems:
            raise SettingsError(f"{cls.__name__}: {'; '.join(problems)}")
        return cls(**values)

    def __post_init__(self) -> None:
        for spec in fields(self):
            low, high = spec.metadata.get("low"), spec.metadata.get("high")
            value = getattr(self, spec.name)
            if low is not None and value < low:
                raise SettingsError(f"{spec.name.upper()} must be at least {low}, not {value}")
            if high is not None and value > high:
                raise SettingsError(f"{spec.name.upper()} must be at most {high}, not {value}")


def _read(
    specs: tuple[Field[Any], ...], env: Mapping[str, str]
) -> tuple[dict[str, Any], list[str]]:
    values: dict[str, Any] = {}
    problems: list[str] = []
    for spec in specs:
        raw = env.get(spec.name.upper())
        if raw is None:
            continue
        try:
            values[spec.name] = _PARSERS[str(spec.type)](raw)
        except ValueError:
            problems.append(f"{spec.name.upper()}={raw!r} is not a valid {spec.type}")
    return values, problems


def _required(spec: Field[Any]) -> bool:
    return spec.default is MISSING and spec.default_factory is MISSING


@dataclass(frozen=True)
class AccountSettings(_FromEnvironment):
    """What the account lifecycle needs (the signup trigger and the admin CLI): just the two
    money tables and the size of the signup grant."""

    accounts_table: str
    ledger_table: str
    signup_grant_quota: int = _bounded(0, low=0)


@dataclass(frozen=True)
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
    presign_ttl_seconds: int = _bounded(3600, low=60, high=7 * 24 * 3600)
    max_upload_bytes: int = _bounded(MAX_UPLOAD_BYTES, low=1)
    stuck_after_seconds: int = _bounded(900, low=60)
    # Task rows expire (DynamoDB TTL) at the age the outputs bucket deletes their objects.
    task_retention_days: int = _bounded(30, low=1)
    # Webhooks: only the functions that register, announce or deliver them name these.
    webhooks_table: str | None = None
    webhook_queue_url: str | None = None
    # Set by the local stack's runtime only: receivers at http://127.0.0.1 are allowed too.
    webhook_loopback_receivers: bool = False
