"""Pipeline mechanics (steps, input references, encoding) and the shipped catalog."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageOps, ImageStat
from pixelbatch.imaging.failures import ItemFailure
from pixelbatch.imaging.pipeline import Rendered, run_pipeline, validate_steps

Photo = Callable[[str], Image.Image]
ToBytes = Callable[..., bytes]

ROOT = Path(__file__).resolve().parents[3]
CATALOG: list[dict[str, Any]] = json.loads((ROOT / "catalog" / "pipelines.json").read_text())
BY_ID = {p["pipeline_id"]: p for p in CATALOG}

# the feature catalog validates these user params, so their names are a contract
EXPECTED_INPUTS = {
    "pl_basic_clean": {"brightness", "contrast"},
    "pl_portrait_retouch": {"smoothing", "saturation", "sharpen"},
    "pl_product_shot": {"size", "format"},
    "pl_watermark": {"text", "opacity", "position", "quality"},
    "pl_bw_classic": {"contrast"},
}


def opened(out: Rendered) -> Image.Image:
    im = Image.open(io.BytesIO(out.data))
    im.load()
    return im


def px(im: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    value = im.getpixel(xy)
    assert isinstance(value, tuple)
    return value


def luma_mean(im: Image.Image) -> float:
    return ImageStat.Stat(im.convert("L")).mean[0]


def steps_of(pipeline_id: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = BY_ID[pipeline_id]["steps"]
    return steps


def input_names(steps: list[dict[str, Any]]) -> set[str]:
    return {
        value["$input"]
        for step in steps
        for value in step.get("params", {}).values()
        if isinstance(value, dict)
    }


def invalid(data: bytes, steps: list[dict[str, Any]], inputs: dict[str, Any]) -> ItemFailure:
    with pytest.raises(ItemFailure) as info:
        run_pipeline(data, steps, inputs)
    return info.value


# ---- catalog ------------------------------------------------------------------------------


def test_catalog_has_every_pipeline_once_and_each_is_valid() -> None:
    ids = [p["pipeline_id"] for p in CATALOG]
    assert len(ids) == len(set(ids))
    assert set(EXPECTED_INPUTS) | {"pl_hdr_tone", "pl_sepia_legacy"} <= set(ids)
    for pipeline in CATALOG:
        assert set(pipeline) == {"pipeline_id", "description", "steps"}
        assert pipeline["description"].strip()
        validate_steps(pipeline["steps"])


@pytest.mark.parametrize("pipeline_id", sorted(EXPECTED_INPUTS))
def test_catalog_input_names_are_the_agreed_ones(pipeline_id: str) -> None:
    assert input_names(steps_of(pipeline_id)) == EXPECTED_INPUTS[pipeline_id]


@pytest.mark.parametrize("pipeline_id", sorted(BY_ID))
def test_every_catalog_pipeline_runs_on_a_real_photo(pipeline_id: str, chelsea_jpeg: bytes) -> None:
    out = run_pipeline(chelsea_jpeg, steps_of(pipeline_id), {})
    im = opened(out)
    assert im.size == (out.width, out.height)
    assert Image.MIME[im.format or ""] == out.content_type
    assert (
        out.ext == {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}[out.content_type]
    )


def test_basic_clean_follows_the_brightness_input(chelsea_jpeg: bytes) -> None:
    steps = steps_of("pl_basic_clean")
    plain = opened(run_pipeline(chelsea_jpeg, steps, {}))
    brighter = opened(run_pipeline(chelsea_jpeg, steps, {"brightness": 40, "contrast": 0}))
    assert luma_mean(brighter) > luma_mean(plain) * 1.2
    assert opened(run_pipeline(chelsea_jpeg, steps, {"brightness": None})).size == plain.size


def test_product_shot_is_a_white_padded_square(chelsea_jpeg: bytes) -> None:
    steps = steps_of("pl_product_shot")
    out = run_pipeline(chelsea_jpeg, steps, {"size": 400})
    im = opened(out).convert("RGB")
    assert (out.content_type, im.size) == ("image/png", (400, 400))
    assert im.getpixel((0, 0)) == im.getpixel((399, 399)) == (255, 255, 255)
    assert im.getpixel((200, 200)) != (255, 255, 255)
    # a small photo is scaled up to fill the square's width
    big = opened(run_pipeline(chelsea_jpeg, steps, {"format": "jpeg"}))
    assert big.format == "JPEG" and big.size == (1600, 1600)
    assert min(px(big.convert("RGB"), (3, 800))) < 240


def test_watermark_pipeline_marks_the_bottom_right(chelsea_jpeg: bytes) -> None:
    steps = steps_of("pl_watermark")
    blank = opened(run_pipeline(chelsea_jpeg, steps, {"opacity": 0, "quality": 100}))
    marked = opened(run_pipeline(chelsea_jpeg, steps, {"opacity": 1, "quality": 100}))
    assert marked.format == "WEBP"
    bbox = ImageChops.difference(blank.convert("RGB"), marked.convert("RGB")).getbbox()
    assert bbox is not None and bbox[0] > 451 / 2 and bbox[1] > 300 / 2


def test_bw_classic_is_a_grayscale_jpeg(chelsea_jpeg: bytes) -> None:
    im = opened(run_pipeline(chelsea_jpeg, steps_of("pl_bw_classic"), {}))
    # one channel: a third of the samples to encode, and nothing but grey to show
    assert (im.format, im.mode) == ("JPEG", "L")
    assert ImageStat.Stat(im).stddev[0] > 20  # a picture, not a flat grey


def test_grayscale_to_webp_stays_rgb(chelsea_jpeg: bytes) -> None:
    steps = [{"name": "mono", "op": "grayscale", "params": {}},
             {"name": "save", "op": "encode", "params": {"format": "webp", "quality": 80}}]
    im = opened(run_pipeline(chelsea_jpeg, steps, {}))
    assert im.mode == "RGB"
    r, g, b = im.split()
    spread = ImageChops.difference(r, g), ImageChops.difference(g, b)
    assert all(ImageStat.Stat(d).extrema[0][1] <= 8 for d in spread)  # lossy rounding only


def test_portrait_retouch_limits_the_long_side(photo: Photo, to_bytes: ToBytes) -> None:
    big = ImageOps.fit(photo("retina.jpg"), (2800, 1000))
    out = run_pipeline(to_bytes(big, "JPEG"), steps_of("pl_portrait_retouch"), {"smoothing": 6})
    assert (out.width, out.height) == (2560, 914)


# ---- mechanics ----------------------------------------------------------------------------


def test_without_encode_step_output_is_jpeg_q90(chelsea_jpeg: bytes) -> None:
    out = run_pipeline(
        chelsea_jpeg, [{"name": "b", "op": "brightness", "params": {"amount": 5}}], {}
    )
    assert (out.ext, out.content_type) == ("jpg", "image/jpeg")
    assert opened(out).format == "JPEG"
    q90 = run_pipeline(
        chelsea_jpeg,
        [
            {"name": "b", "op": "brightness", "params": {"amount": 5}},
            {"name": "e", "op": "encode", "params": {"quality": 90}},
        ],
        {},
    )
    assert q90.data == out.data


@pytest.mark.parametrize(
    ("fmt", "ext", "content_type"),
    [("jpeg", "jpg", "image/jpeg"), ("png", "png", "image/png"), ("webp", "webp", "image/webp")],
)
def test_encode_formats(chelsea_jpeg: bytes, fmt: str, ext: str, content_type: str) -> None:
    steps = [{"name": "e", "op": "encode", "params": {"format": {"$input": "f"}, "quality": 80}}]
    out = run_pipeline(chelsea_jpeg, steps, {"f": fmt})
    assert (out.ext, out.content_type, out.width, out.height) == (ext, content_type, 451, 300)
    assert opened(out).format == fmt.upper()


def test_quality_input_changes_size(chelsea_jpeg: bytes) -> None:
    steps = [{"name": "e", "op": "encode", "params": {"quality": {"$input": "q", "default": 90}}}]
    low = run_pipeline(chelsea_jpeg, steps, {"q": 20})
    high = run_pipeline(chelsea_jpeg, steps, {})
    assert len(low.data) < len(high.data) * 0.5


@pytest.mark.parametrize(
    "inputs", [{"brightness": 500}, {"brightness": "10"}, {"brightness": True}, {"contrast": [1]}]
)
def test_bad_inputs_fail_as_invalid_parameters_before_decoding(inputs: dict[str, Any]) -> None:
    err = invalid(b"not even an image", steps_of("pl_basic_clean"), inputs)
    assert (err.code, err.message, err.retryable) == ("invalid_parameters", "处理参数无效", False)


def test_reference_without_default_needs_the_input(chelsea_jpeg: bytes) -> None:
    steps = [{"name": "w", "op": "watermark_text", "params": {"text": {"$input": "text"}}}]
    validate_steps(steps)  # valid as a schema: the user supplies the text
    assert invalid(chelsea_jpeg, steps, {}).code == "invalid_parameters"
    assert run_pipeline(chelsea_jpeg, steps, {"text": "ok"}).width == 451


def test_output_larger_than_the_pixel_limit_is_refused(chelsea_jpeg: bytes) -> None:
    steps = [{"name": "p", "op": "pad", "params": {"width": 3000, "height": 3000}}]
    with pytest.raises(ItemFailure) as info:
        run_pipeline(chelsea_jpeg, steps, {}, max_pixels=1_000_000)
    assert info.value.code == "invalid_parameters"


@pytest.mark.parametrize(
    "steps",
    [
        [],
        {"name": "a", "op": "grayscale"},
        [{"name": "a", "op": "explode"}],
        [{"name": "a", "op": "grayscale", "extra": 1}],
        [{"op": "grayscale"}],
        [{"name": "a", "op": "grayscale"}, {"name": "a", "op": "grayscale"}],
        [{"name": "e", "op": "encode"}, {"name": "g", "op": "grayscale"}],
        [{"name": "a", "op": "brightness", "params": [1]}],
        [{"name": "a", "op": "brightness", "params": {"amount": 200}}],
        [{"name": "a", "op": "brightness", "params": {"amount": {"$input": ""}}}],
        [{"name": "a", "op": "brightness", "params": {"amount": {"$input": "x", "dflt": 1}}}],
        [{"name": "a", "op": "brightness", "params": {"amount": {"$input": "x", "default": 999}}}],
        [{"name": "a", "op": "resize", "params": {}}],
    ],
)
def test_validate_steps_rejects_bad_pipelines(steps: Any) -> None:
    with pytest.raises(ValueError):
        validate_steps(steps)


@pytest.mark.slow
def test_basic_clean_on_a_12_megapixel_photo_is_fast(tmp_path: Path) -> None:
    script = ROOT / "tests" / "fixtures" / "corpus" / "make_phone_set.py"
    subprocess.run([sys.executable, str(script), str(tmp_path), "1"], check=True)
    data = (tmp_path / "phone_001.jpg").read_bytes()
    steps = steps_of("pl_basic_clean")
    timings = []
    for _ in range(2):
        start = time.perf_counter()
        out = run_pipeline(data, steps, {"brightness": 10, "contrast": 10})
        timings.append(time.perf_counter() - start)
    assert (out.width, out.height) == (4032, 3024)
    assert min(timings) < 2.0


def test_grayscale_png_with_transparency_keeps_it_through_a_luma_pipeline(
    photo: Photo, to_bytes: ToBytes
) -> None:
    grey = photo("camera.png").convert("L")
    grey.info["transparency"] = 0  # black is see-through
    grey.putpixel((0, 0), 0)
    steps = [{"name": "mono", "op": "grayscale", "params": {}},
             {"name": "save", "op": "encode", "params": {"format": "png"}}]
    out = opened(run_pipeline(to_bytes(grey, "PNG", transparency=0), steps, {}))
    assert out.mode == "LA"
    assert out.getpixel((0, 0))[1] == 0  # type: ignore[index]
