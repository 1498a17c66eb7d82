"""Which features exist, who may use them, and what parameters they take."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

from pixelbatch.errors import (
    FeatureDisabled,
    FeatureNotFound,
    InvalidParameters,
    PlanNotAllowed,
    RateLimited,
)
from pixelbatch.models import Feature
from pixelbatch.repos.catalog import CatalogStore
from pixelbatch.repos.ratelimit import RateLimitStore


class CatalogService:
    def __init__(self, store: CatalogStore) -> None:
        self._store = store

    def usable_feature(self, feature_id: str, plan: str) -> Feature:
        feature = self._store.get_feature(feature_id)
        if feature is None or feature.deleted_at:
            raise FeatureNotFound()
        if not feature.is_enabled:
            raise FeatureDisabled()
        if plan not in feature.allowed_plans:
            raise PlanNotAllowed()
        return feature

    def visible_features(self, plan: str) -> list[Feature]:
        return [
            feature
            for feature in self._store.list_features()
            if not feature.deleted_at and feature.is_enabled and plan in feature.allowed_plans
        ]

    def pipeline_steps(self, feature: Feature) -> list[dict[str, Any]]:
        steps = self._store.get_pipeline_steps(feature.pipeline_id)
        if steps is None:
            raise RuntimeError(f"pipeline {feature.pipeline_id} of {feature.feature_id} missing")
        return steps


def validate_inputs(feature: Feature, input_data: dict[str, Any]) -> dict[str, Any]:
    """Check input_data against the feature's JSON schema and fill in declared defaults."""
    from jsonschema import Draft202012Validator  # only the create routes validate; slow import

    validator = Draft202012Validator(feature.parameters_schema)
    errors = sorted(validator.iter_errors(input_data), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first.absolute_path) or "input_data"
        raise InvalidParameters(f"input_data参数无效: {where}: {first.message}")
    filled = copy.deepcopy(input_data)
    for name, spec in feature.parameters_schema.get("properties", {}).items():
        if name not in filled and isinstance(spec, dict) and "default" in spec:
            filled[name] = spec["default"]
    return filled


class RateLimiter:
    def __init__(self, store: RateLimitStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    def check(self, user_id: str, feature: Feature) -> None:
        policy = feature.rate_limit
        count = self._store.hit(
            f"{user_id}#{feature.feature_id}",
            limit=policy.limit,
            window_seconds=policy.window_seconds,
            now=self._clock(),
        )
        if not count.allowed:
            raise RateLimited(reset_at=count.reset_at, remaining=0)
