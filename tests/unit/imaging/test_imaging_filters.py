"""The OpenCV filters give Pillow's pixels: the same blur, unsharp mask, edge-aware smoothing
and colour matrix, on average within a level, on real photos. (Pillow's Gaussian is three box
passes, OpenCV's a sampled Gaussian; the two differ by up to about half a level on texture.)"""
from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image, ImageChops, ImageFilter, ImageOps, ImageStat
from pixelbatch.imaging import filters
from pixelbatch.imaging.failures import ItemFailure
from pixelbatch.imaging.ops import _correction_lut, _flat_area_weights, _ramp
from pixelbatch.imaging.pipeline import run_pipeline

from tests.support.reference_imaging import _smooth_flat_areas

if TYPE_CHECKING:
    from pixelbatch.imaging.filters import Pixels

Photo = Callable[[str], Image.Image]
PHOTOS = ["astronaut.png", "rocket.jpg", "gravel.png"]  # a portrait, a scene, fine texture
LIMIT = 0.75  # mean absolute difference, worst band, levels of 0..255


def on_pixels(im: Image.Image, run: Callable[[Pixels], Pixels]) -> Image.Image:
    return filters.through_pixels(im, run)


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    """The worst band's mean absolute difference, in levels of 0..255."""
    assert (a.mode, a.size) == (b.mode, b.size)
    return max(ImageStat.Stat(ImageChops.difference(a, b)).mean)


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize(("blur", "sigma"), [
    (filters.gaussian_blur, 0.8), (filters.gaussian_blur, 2.0),
    (filters.wide_blur, 2.0), (filters.wide_blur, 3.0),  # at half resolution
])
def test_the_blurs_are_pillows(
    photo: Photo, name: str, mode: str, blur: Callable[[Pixels, float], Pixels], sigma: float
) -> None:
    im = photo(name).convert(mode)
    ours = on_pixels(im, lambda px: blur(px, sigma))
    assert mean_difference(ours, im.filter(ImageFilter.GaussianBlur(sigma))) < LIMIT


def test_a_narrow_blur_stays_at_full_resolution(photo: Photo) -> None:
    pixels = np.asarray(photo("rocket.jpg"))
    assert np.array_equal(filters.wide_blur(pixels, 0.8), filters.gaussian_blur(pixels, 0.8))


@pytest.mark.parametrize("size", [(1, 1), (3, 2), (2, 5)])
def test_a_wide_blur_keeps_the_size_of_the_smallest_images(size: tuple[int, int]) -> None:
    pixels = np.full((size[1], size[0], 3), 200, dtype=np.uint8)
    assert np.array_equal(filters.wide_blur(pixels, 2.0), pixels)


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize("percent", [60, 150])
def test_unsharp_mask_is_pillows(photo: Photo, name: str, mode: str, percent: int) -> None:
    im = photo(name).convert(mode)
    ours = on_pixels(im, lambda px: filters.unsharp_mask(px, 2.0, _correction_lut(percent)))
    assert mean_difference(ours, im.filter(ImageFilter.UnsharpMask(2, percent, 2))) < LIMIT


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize("strength", [2, 6])
def test_smooth_flat_areas_is_the_reference(
    photo: Photo, name: str, mode: str, strength: float
) -> None:
    im = photo(name).convert(mode)
    sigma, weight = 0.5 + 0.15 * strength, min(1.0, 0.2 + 0.08 * strength)
    weights = _flat_area_weights(weight)
    ours = on_pixels(im, lambda px: filters.smooth_flat_areas(px, sigma, weights))
    assert mean_difference(ours, _smooth_flat_areas(im, strength)) < LIMIT


@pytest.mark.parametrize("name", PHOTOS)
def test_color_matrix_is_pillows_convert(photo: Photo, name: str) -> None:
    im = photo(name)
    rows = [[0.6, 0.3, 0.1], [-0.2, 1.1, 0.1], [0.05, 0.05, 0.9]]
    matrix = tuple(v for row in rows for v in [*row, 0.0])
    theirs = im.convert("RGB", matrix)
    ours = on_pixels(im, lambda px: filters.color_matrix(px, rows))
    assert mean_difference(ours, theirs) < 0.25  # rounding


@pytest.mark.parametrize("name", PHOTOS)
def test_composite_is_pillows(photo: Photo, name: str) -> None:
    im = photo(name)
    other, mask = im.transpose(Image.Transpose.ROTATE_180), im.convert("L")
    ours = on_pixels(im, lambda px: filters._composite(np.asarray(other), px, np.asarray(mask)))
    assert mean_difference(ours, Image.composite(other, im, mask)) < 0.01


@pytest.mark.parametrize("name", PHOTOS)
def test_grey_to_colour_is_pillows_colorize(photo: Photo, name: str) -> None:
    im = photo(name)
    palette = _ramp("#2b1d0e", "#fff4e0")
    ours = on_pixels(im, lambda px: filters.grey_to_colour(filters.luma(px), palette))
    theirs = ImageOps.colorize(im.convert("L"), "#2b1d0e", "#fff4e0")
    assert mean_difference(ours, theirs) < 0.25  # luma rounding


@pytest.mark.parametrize("pipeline", [
    # tone steps before, between and after the pixel ops, on colour and on grey
    ["contrast", "saturation", "sharpen"],
    ["colorize", "brightness", "contrast", "denoise"],
    ["grayscale", "contrast", "sharpen", "brightness"],
])
def test_a_run_of_pixel_ops_in_one_array_gives_each_ops_pixels(
    photo: Photo, to_bytes: Callable[..., bytes], pipeline: list[str]
) -> None:
    params = {"contrast": {"amount": 30}, "brightness": {"amount": -10},
              "saturation": {"amount": 40}, "sharpen": {"amount": 4},
              "denoise": {"strength": 3}, "colorize": {}, "grayscale": {}}
    steps = [{"name": op, "op": op, "params": params[op]} for op in pipeline]
    png = {"name": "save", "op": "encode", "params": {"format": "png"}}
    data = to_bytes(photo("rocket.jpg"), "PNG")
    # When the pipeline runs the ops as one array run, and one op per pipeline in turn
    together = Image.open(io.BytesIO(run_pipeline(data, [*steps, png], {}).data))
    for step in steps:
        data = run_pipeline(data, [step, png], {}).data
    # Then the pixels are the same
    one_by_one = Image.open(io.BytesIO(data))
    assert mean_difference(together.convert("RGB"), one_by_one.convert("RGB")) == 0


def test_importing_the_pipeline_loads_neither_numpy_nor_opencv() -> None:
    # The API functions validate pipelines and carry no imaging layer on AWS
    probe = ("import sys, pixelbatch.imaging.pipeline, pixelbatch.services.processing; "
             "print(sorted({'cv2', 'numpy'} & set(sys.modules)))")
    core = Path(filters.__file__).resolve().parents[2]
    ran = subprocess.run([sys.executable, "-c", probe], cwd=core, capture_output=True,
                         text=True, timeout=60, check=True)
    assert ran.stdout.strip() == "[]", ran.stderr


# ---- JPEG in and out through OpenCV ---------------------------------------------------------

TONE_FIRST = {  # pipelines whose first pass takes pixels, three of them as in the catalog
    "basic_clean": [
        {"name": "b", "op": "brightness", "params": {"amount": 10}},
        {"name": "c", "op": "contrast", "params": {"amount": 5}},
        {"name": "save", "op": "encode", "params": {"format": "jpeg", "quality": 90}},
    ],
    "bw_classic": [
        {"name": "mono", "op": "grayscale", "params": {}},
        {"name": "c", "op": "contrast", "params": {"amount": 20}},
        {"name": "s", "op": "sharpen", "params": {"amount": 2}},
        {"name": "save", "op": "encode", "params": {"format": "jpeg", "quality": 90}},
    ],
    "sepia": [
        {"name": "sepia", "op": "colorize", "params": {"dark": "#2b1d0e", "light": "#fff4e0"}},
        {"name": "blur", "op": "denoise", "params": {"strength": 3}},
        {"name": "save", "op": "encode", "params": {"format": "jpeg", "quality": 85}},
    ],
    "transcode": [{"name": "save", "op": "encode", "params": {"format": "jpeg", "quality": 80}}],
    "vivid": [  # a colour matrix: the bands in their own order
        {"name": "c", "op": "contrast", "params": {"amount": 10}},
        {"name": "s", "op": "saturation", "params": {"amount": 30}},
    ],
}
# An RGB profile in two APP2 markers (a marker holds 65519 bytes of it)
LARGE_ICC = bytes(16) + b"RGB " + bytes(70_000)


def jpeg_of(im: Image.Image, *, orientation: int = 1, icc: bytes | None = None) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    im.save(buffer, "JPEG", quality=92, exif=exif, **({"icc_profile": icc} if icc else {}))
    return buffer.getvalue()


@pytest.fixture
def opencv_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each time the pipeline hands a JPEG to OpenCV's decoder, and what it asks for:
    L, RGB, or RGB backed by the BGR array the encoder takes as it is."""
    calls: list[str] = []
    decode = filters.decode_jpeg

    def spy(data: bytes, *, grey: bool, bgr_backed: bool) -> Pixels | None:
        calls.append("L" if grey else "BGR" if bgr_backed else "RGB")
        return decode(data, grey=grey, bgr_backed=bgr_backed)

    monkeypatch.setattr(filters, "decode_jpeg", spy)
    return calls


@pytest.mark.parametrize("pipeline", sorted(TONE_FIRST))
@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_jpeg_read_and_written_by_opencv_is_byte_for_byte_pillows(
    photo: Photo, opencv_decodes: list[str], pipeline: str, orientation: int
) -> None:
    # Given a photo stored turned (EXIF orientation) with an ICC profile of two markers
    data = jpeg_of(photo("rocket.jpg"), orientation=orientation, icc=LARGE_ICC)
    steps = TONE_FIRST[pipeline]
    # When it runs through OpenCV's codec, and through Pillow's (a byte after the end of the
    # JPEG sends it to Pillow)
    ours = run_pipeline(data, steps, {})
    # grey where only luma is read; BGR where every step treats the bands alike
    decoded = {"bw_classic": "L", "sepia": "L", "vivid": "RGB"}.get(pipeline, "BGR")
    assert opencv_decodes == [decoded]
    pillows = run_pipeline(data + b"\0", steps, {})
    assert len(opencv_decodes) == 1
    # Then the output is the same file, upright, with the profile where it fits
    assert ours == pillows
    out = Image.open(io.BytesIO(ours.data))
    assert out.size == (427, 640) if orientation >= 5 else (640, 427)
    assert out.info.get("icc_profile") == (None if out.mode == "L" else LARGE_ICC)
    assert "exif" not in out.info


def test_a_truncated_jpeg_never_reaches_opencv(
    photo: Photo, opencv_decodes: list[str]
) -> None:
    # OpenCV would decode the missing half as grey; Pillow rejects it
    data = jpeg_of(photo("rocket.jpg"))
    with pytest.raises(ItemFailure) as failed:
        run_pipeline(data[: len(data) * 2 // 3], TONE_FIRST["basic_clean"], {})
    assert failed.value.code == "corrupt_image" and opencv_decodes == []


@pytest.mark.parametrize("orientation", range(1, 9))
def test_upright_pixels_are_exif_transposes(photo: Photo, orientation: int) -> None:
    im = photo("rocket.jpg")
    turned = Image.open(io.BytesIO(jpeg_of(im, orientation=orientation)))
    turned.load()
    stored = np.asarray(turned)
    expected = np.asarray(ImageOps.exif_transpose(turned))
    assert np.array_equal(filters.upright(stored, orientation), expected)
    # and RGB viewed over BGR storage turns the same, and stays backed by BGR
    backed = np.ascontiguousarray(stored[..., ::-1])[..., ::-1]
    turned_backed = filters.upright(backed, orientation)
    assert np.array_equal(turned_backed, expected)
    assert turned_backed[..., ::-1].flags.c_contiguous


def test_a_table_on_bgr_backed_pixels_is_written_over_their_storage(photo: Photo) -> None:
    rgb = np.asarray(photo("rocket.jpg")).copy()
    backed = np.ascontiguousarray(rgb[..., ::-1])[..., ::-1]
    inverted = [255 - v for v in range(256)]
    out = filters.apply_lut(backed, inverted, in_place=True)
    assert np.array_equal(out, 255 - rgb)
    assert np.shares_memory(out, backed) and out[..., ::-1].flags.c_contiguous


def test_a_table_leaves_pixels_that_may_not_be_written_alone(photo: Photo) -> None:
    frozen = np.asarray(photo("rocket.jpg"))  # a view of Pillow's bytes: read-only
    before = frozen.copy()
    out = filters.apply_lut(frozen, [255 - v for v in range(256)], in_place=True)
    assert np.array_equal(frozen, before) and np.array_equal(out, 255 - before)


# ---- shrink ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize("factor", [1.3, 1.575, 2.5])
def test_shrink_is_pillows_lanczos(photo: Photo, name: str, mode: str, factor: float) -> None:
    im = photo(name).convert(mode)
    size = (round(im.width / factor), round(im.height / factor))
    ours = on_pixels(im, lambda px: filters.shrink(px, size))
    # About a fifth of a level on a phone photo; the fine texture of gravel.png is the worst
    assert ours.size == size
    assert mean_difference(ours, im.resize(size, Image.Resampling.LANCZOS)) < 1.0


def test_the_shrink_op_keeps_transparency_and_never_enlarges(photo: Photo) -> None:
    im = photo("rocket.jpg").convert("RGBA")  # 640x427
    im.putalpha(Image.linear_gradient("L").resize(im.size))
    png = {"name": "save", "op": "encode", "params": {"format": "png"}}

    def shrunk(limit: int) -> Image.Image:
        step = {"name": "limit", "op": "shrink", "params": {"max_width": limit}}
        buffer = io.BytesIO()
        im.save(buffer, "PNG")
        return Image.open(io.BytesIO(run_pipeline(buffer.getvalue(), [step, png], {}).data))

    small = shrunk(320)
    assert (small.mode, small.size) == ("RGBA", (320, 214))
    expected_alpha = im.getchannel("A").resize(small.size, Image.Resampling.LANCZOS)
    assert mean_difference(small.getchannel("A"), expected_alpha) == 0
    assert shrunk(1000).size == (640, 427)


@pytest.mark.parametrize(("kind", "mode", "options", "by_opencv"), [
    ("grey", "L", {}, True),
    ("progressive", "RGB", {"progressive": True}, True),
    ("full chroma", "RGB", {"subsampling": 0}, True),
    ("CMYK", "CMYK", {}, False),  # Adobe's inverted CMYK: Pillow's decoder handles it
])
@pytest.mark.parametrize("pipeline", ["basic_clean", "bw_classic"])
def test_other_kinds_of_jpeg_give_pillows_bytes_too(
    photo: Photo, opencv_decodes: list[str], kind: str, mode: str, options: dict[str, object],
    by_opencv: bool, pipeline: str,
) -> None:
    buffer = io.BytesIO()
    photo("rocket.jpg").convert(mode).save(buffer, "JPEG", quality=90, **options)
    data = buffer.getvalue()
    steps = TONE_FIRST[pipeline]
    ours = run_pipeline(data, steps, {})
    assert len(opencv_decodes) == int(by_opencv), kind
    assert ours == run_pipeline(data + b"\0", steps, {})
