"""The photos and pipelines the benchmarks run on."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from PIL import Image

from bench import REPO
from tests.support.phone_set import phone_set

CATALOG = REPO / "catalog"
THUMBNAIL_SIZE = (504, 378)  # 1/8 of 4032x3024: the JPEG decoder scales by 8 for free


@dataclass(frozen=True)
class Photo:
    name: str
    data: bytes


def phone_photos(count: int) -> list[Photo]:
    """The first ``count`` 12 MP photos of the deterministic phone set (made once, cached)."""
    return [Photo(path.name, path.read_bytes()) for path in phone_set(count)]


def thumbnails(photos: list[Photo]) -> list[Photo]:
    """Small JPEGs of the same photos, for runs that must not spend their time on pixels."""
    small = []
    for photo in photos:
        image = Image.open(io.BytesIO(photo.data))
        image.draft("RGB", THUMBNAIL_SIZE)
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "JPEG", quality=85)
        small.append(Photo(photo.name, buffer.getvalue()))
    return small


@cache
def pipelines() -> dict[str, list[dict[str, Any]]]:
    """Catalog pipeline id -> steps."""
    rows = json.loads((CATALOG / "pipelines.json").read_text())
    return {row["pipeline_id"]: row["steps"] for row in rows}


@cache
def feature_pipeline(feature_id: str) -> str:
    rows = json.loads((CATALOG / "features.json").read_text())
    return str(next(row for row in rows if row["feature_id"] == feature_id)["pipeline_schema_ref"])


BATCH_FEATURE = "basic_clean"
BATCH_INPUTS: dict[str, Any] = {"brightness": 10, "contrast": 5}


def batch_steps() -> list[dict[str, Any]]:
    return pipelines()[feature_pipeline(BATCH_FEATURE)]
