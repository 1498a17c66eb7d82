"""The catalog pipelines against the plain Pillow reference (each op its own full-resolution
pass, JPEG with optimize): the fused lookup tables, decoder drafts and OpenCV's filters must
not change the output visibly, nor make files noticeably bigger."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageStat
from pixelbatch.imaging.pipeline import Rendered, run_pipeline

from tests.support.phone_set import phone_set
from tests.support.reference_imaging import reference_pipeline

ROOT = Path(__file__).resolve().parents[3]
PHOTOS = ROOT / "tests" / "fixtures" / "corpus" / "photos"
PIPELINES: dict[str, list[dict[str, Any]]] = {
    row["pipeline_id"]: row["steps"]
    for row in json.loads((ROOT / "catalog" / "pipelines.json").read_text())
}
INPUTS: dict[str, dict[str, Any]] = {"pl_basic_clean": {"brightness": 10, "contrast": 5}}
# mean absolute difference per channel, in levels of 0..255
TONE_AND_RESIZE_LIMIT = 1.0
BLUR_LIMIT = 2.0
BLUR_PIPELINES = {"pl_portrait_retouch", "pl_hdr_tone", "pl_sepia_legacy"}
MAX_SIZE_GROWTH = 1.05
SMALL_PHOTOS = ["rocket.jpg", "retina.jpg", "coffee.png", "camera.png"]
MID_SIZE = (2048, 1536)


def mean_abs_difference(a: Rendered, b: Rendered) -> float:
    """The largest of the channels' mean absolute differences, as RGB."""
    first, second = (Image.open(io.BytesIO(r.data)).convert("RGB") for r in (a, b))
    assert first.size == second.size
    return max(ImageStat.Stat(ImageChops.difference(first, second)).mean)


def check_against_reference(pipeline_id: str, data: bytes) -> None:
    steps, inputs = PIPELINES[pipeline_id], INPUTS.get(pipeline_id, {})
    # When the product's pipeline and the plain reference run on the same photo
    ours, reference = run_pipeline(data, steps, inputs), reference_pipeline(data, steps, inputs)
    # Then the pictures match within the limit and the file is hardly bigger
    limit = BLUR_LIMIT if pipeline_id in BLUR_PIPELINES else TONE_AND_RESIZE_LIMIT
    assert (ours.width, ours.height, ours.ext) == (reference.width, reference.height,
                                                   reference.ext)
    assert mean_abs_difference(ours, reference) <= limit
    assert len(ours.data) <= MAX_SIZE_GROWTH * len(reference.data)


@pytest.mark.parametrize("pipeline_id", sorted(PIPELINES))
@pytest.mark.parametrize("name", SMALL_PHOTOS)
def test_pipeline_matches_the_reference_on_corpus_photos(pipeline_id: str, name: str) -> None:
    check_against_reference(pipeline_id, (PHOTOS / name).read_bytes())


@pytest.mark.parametrize("pipeline_id", sorted(PIPELINES))
@pytest.mark.parametrize("index", [0, 7])  # the eighth is a star field: fine colour detail
def test_pipeline_matches_the_reference_on_3_megapixel_photos(pipeline_id: str, index: int) -> None:
    # above 2 MP: contrast reads its mean from a sample, which smaller images never do
    check_against_reference(pipeline_id, phone_set(index + 1, *MID_SIZE)[index].read_bytes())


@pytest.mark.slow
@pytest.mark.parametrize("pipeline_id", sorted(PIPELINES))
@pytest.mark.parametrize("index", [0, 4])  # the fifth carries EXIF orientation 6
def test_pipeline_matches_the_reference_on_12_megapixel_photos(
    pipeline_id: str, index: int
) -> None:
    check_against_reference(pipeline_id, phone_set(index + 1)[index].read_bytes())


def test_fused_tone_steps_give_the_same_pixels_as_one_pass_each() -> None:
    data = (PHOTOS / "rocket.jpg").read_bytes()
    steps = [
        {"name": "b1", "op": "brightness", "params": {"amount": 12}},
        {"name": "c1", "op": "contrast", "params": {"amount": -20}},
        {"name": "b2", "op": "brightness", "params": {"amount": -7}},
        {"name": "c2", "op": "contrast", "params": {"amount": 35}},
        {"name": "save", "op": "encode", "params": {"format": "png"}},
    ]
    ours, reference = run_pipeline(data, steps, {}), reference_pipeline(data, steps, {})
    assert mean_abs_difference(ours, reference) == 0
