"""Payloads the state machine sends to its Lambdas: keys and small records only."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RoundItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=0)
    attempt: int = Field(ge=1)


class RoundEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    task_id: str = Field(min_length=1)
    round: int = Field(ge=1)
    items: tuple[RoundItem, ...] = ()  # the round's item attempts (Finalize only)


class ItemEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    action: Literal["process", "record_failure"] = "process"
    task_id: str = Field(min_length=1)
    index: int = Field(ge=0)
    attempt: int = Field(ge=1)
    error: str | None = None
