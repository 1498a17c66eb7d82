"""Features and pipeline schemas, as seeded from catalog/."""

from __future__ import annotations

from typing import Any

from pixelbatch.models import Feature, RateLimitPolicy
from pixelbatch.repos.dynamo import plain


class CatalogStore:
    def __init__(self, dynamodb: Any, *, features_table: str, pipelines_table: str) -> None:
        self._features = dynamodb.Table(features_table)
        self._pipelines = dynamodb.Table(pipelines_table)

    def get_feature(self, feature_id: str) -> Feature | None:
        row = self._features.get_item(Key={"feature_id": feature_id}).get("Item")
        return feature_from_row(row) if row else None

    def list_features(self) -> list[Feature]:
        rows: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {}
        while True:
            page = self._features.scan(**kwargs)
            rows.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted((feature_from_row(r) for r in rows), key=lambda f: f.feature_id)

    def get_pipeline_steps(self, pipeline_id: str) -> list[dict[str, Any]] | None:
        row = self._pipelines.get_item(Key={"pipeline_id": pipeline_id}).get("Item")
        return list(plain(row)["steps"]) if row else None


def feature_from_row(row: dict[str, Any]) -> Feature:
    r = plain(row)
    policy = r.get("rate_limit_policy") or {}
    return Feature(
        feature_id=r["feature_id"],
        name=r.get("name", r["feature_id"]),
        description=r.get("description", ""),
        is_enabled=bool(r.get("is_enabled", False)),
        deleted_at=r.get("deleted_at"),
        quota_cost=int(r["quota_cost"]),
        rate_limit=RateLimitPolicy(
            limit=int(policy.get("limit", 10)), window_seconds=int(policy.get("window_seconds", 60))
        ),
        pipeline_id=r["pipeline_schema_ref"],
        allowed_plans=tuple(r.get("allowed_plans", [])),
        parameters_schema=r.get("parameters_schema") or {"type": "object"},
    )
