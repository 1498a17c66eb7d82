"""Each op does what its name says, on real photos."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageEnhance, ImageFilter, ImageStat
from pixelbatch.imaging.ops import OPS

Photo = Callable[[str], Image.Image]


def run_op(name: str, im: Image.Image, **params: Any) -> Image.Image:
    spec = OPS[name]
    assert spec.apply is not None
    return spec.apply(im, spec.bind(params))


def px(im: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    value = im.getpixel(xy)
    assert isinstance(value, tuple)
    return value


def luma_mean(im: Image.Image) -> float:
    return ImageStat.Stat(im.convert("L")).mean[0]


def luma_std(im: Image.Image) -> float:
    return ImageStat.Stat(im.convert("L")).stddev[0]


def max_diff(a: Image.Image, b: Image.Image) -> int:
    return max(
        ImageStat.Stat(ImageChops.difference(a, b)).extrema[i][1] for i in range(len(a.getbands()))
    )


def rms_diff(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).rms) / len(a.getbands())


def edge_energy(im: Image.Image) -> float:
    return ImageStat.Stat(im.convert("L").filter(ImageFilter.FIND_EDGES)).mean[0]


# ---- tone and colour ----------------------------------------------------------------------


def test_brightness_raises_and_lowers_mean_luminance(photo: Photo) -> None:
    im = photo("coffee.png")
    base = luma_mean(im)
    assert luma_mean(run_op("brightness", im, amount=30)) > base * 1.15
    assert luma_mean(run_op("brightness", im, amount=-30)) < base * 0.75


def test_brightness_matches_pillow_enhance(photo: Photo) -> None:
    im = photo("chelsea.png")
    expected = ImageEnhance.Brightness(im).enhance(1.3)
    assert max_diff(run_op("brightness", im, amount=30), expected) <= 1


def test_contrast_widens_spread_and_matches_pillow_enhance(photo: Photo) -> None:
    im = photo("coffee.png")
    out = run_op("contrast", im, amount=40)
    assert luma_std(out) > luma_std(im) * 1.15
    assert luma_std(run_op("contrast", im, amount=-50)) < luma_std(im) * 0.6
    assert max_diff(out, ImageEnhance.Contrast(im).enhance(1.4)) <= 1


def test_zero_amounts_leave_pixels_untouched(photo: Photo) -> None:
    im = photo("rocket.jpg")
    for name in ("brightness", "contrast", "saturation"):
        assert max_diff(run_op(name, im, amount=0), im) == 0
    assert max_diff(run_op("sharpen", im, amount=0), im) == 0
    assert max_diff(run_op("denoise", im, strength=0), im) == 0


def _mean_saturation(im: Image.Image) -> float:
    return ImageStat.Stat(im.convert("HSV").getchannel("S")).mean[0]


def test_saturation_boosts_and_removes_colour(photo: Photo) -> None:
    im = photo("coffee.png")
    assert _mean_saturation(run_op("saturation", im, amount=60)) > _mean_saturation(im) * 1.15
    grey = run_op("saturation", im, amount=-100)
    r, g, b = grey.split()
    assert max_diff(r, g) <= 1 and max_diff(g, b) <= 1


def test_grayscale_gives_equal_channels_and_keeps_alpha(photo: Photo) -> None:
    im = photo("astronaut.png")
    grey = run_op("grayscale", im).convert("RGB")
    r, g, b = grey.split()
    assert max_diff(r, g) == 0 and max_diff(g, b) == 0
    assert _mean_saturation(im) > 20  # the source really was colourful
    rgba = im.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(im.size))
    out = run_op("grayscale", rgba)
    assert out.mode == "LA"
    assert max_diff(out.getchannel("A"), rgba.getchannel("A")) == 0


def test_colorize_maps_greys_onto_a_warm_ramp(photo: Photo) -> None:
    out = run_op("colorize", photo("camera.png"), dark="#2b1d0e", light="#fff4e0")
    r, _, b = (ImageStat.Stat(out).mean[i] for i in range(3))
    assert r > b + 15


# ---- detail -------------------------------------------------------------------------------


def test_sharpen_adds_edge_energy_and_leaves_alpha_alone(photo: Photo) -> None:
    im = photo("chelsea.png")
    assert edge_energy(run_op("sharpen", im, amount=5)) > edge_energy(im) * 1.3
    rgba = im.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(im.size))
    out = run_op("sharpen", rgba, amount=10)
    assert out.mode == "RGBA"
    assert max_diff(out.getchannel("A"), rgba.getchannel("A")) == 0


def test_denoise_moves_a_noisy_photo_back_towards_the_clean_one(photo: Photo) -> None:
    clean = photo("coffee.png")
    # zero-mean grain, as a sensor adds it
    noise = Image.effect_noise(clean.size, 12).convert("RGB")
    noisy = ImageChops.add(clean, noise, 1.0, -128)
    denoised = run_op("denoise", noisy, strength=5)
    assert rms_diff(denoised, clean) < rms_diff(noisy, clean) * 0.85


def test_denoise_keeps_strong_edges_sharper_than_a_plain_blur(photo: Photo) -> None:
    im = photo("camera.png")  # high-contrast silhouette
    denoised = run_op("denoise", im, strength=10)
    blurred = im.filter(ImageFilter.GaussianBlur(2.0))  # same radius as strength 10
    assert edge_energy(denoised) > edge_energy(blurred) * 1.15


# ---- geometry -----------------------------------------------------------------------------


def test_resize_keeps_aspect_and_never_upscales_by_default(photo: Photo) -> None:
    im = photo("chelsea.png")  # 451x300
    assert run_op("resize", im, max_width=200).size == (200, 133)
    assert run_op("resize", im, max_height=150).size == (226, 150)
    assert run_op("resize", im, max_width=300, max_height=100).size == (150, 100)
    assert run_op("resize", im, max_width=2000).size == (451, 300)
    assert run_op("resize", im, max_width=902, upscale=True).size == (902, 600)


def test_fit_gives_exact_size_cropping_at_the_centering_point(photo: Photo) -> None:
    im = photo("chelsea.png")
    left = run_op("fit", im, width=100, height=100, centering_x=0.0)
    right = run_op("fit", im, width=100, height=100, centering_x=1.0)
    assert left.size == right.size == (100, 100)
    # the left edge of the photo ends up in the left crop only
    expected_left = im.crop((0, 0, 300, 300)).resize((100, 100), Image.Resampling.LANCZOS)
    assert rms_diff(left, expected_left) < 3
    assert rms_diff(right, expected_left) > 10
    assert run_op("fit", im, width=50, height=400).size == (50, 400)


def test_pad_centres_on_white_and_shrinks_big_images(photo: Photo) -> None:
    im = photo("chelsea.png")  # 451x300
    out = run_op("pad", im, width=500, height=500)
    assert out.size == (500, 500)
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((499, 499)) == (255, 255, 255)
    assert max_diff(out.crop((24, 100, 475, 400)), im) == 0
    small = run_op("pad", im, width=200, height=200, color="#000000")
    assert small.size == (200, 200)
    assert small.getpixel((100, 5)) == (0, 0, 0)  # letterbox bars above the shrunk photo


def test_pad_with_transparent_colour_adds_alpha(photo: Photo) -> None:
    out = run_op("pad", photo("chelsea.png"), width=460, height=460, color="#ffffff00")
    assert out.mode == "RGBA"
    assert px(out, (0, 0))[3] == 0
    assert px(out, (230, 230))[3] == 255


def test_crop_by_fractions_and_by_aspect(photo: Photo) -> None:
    im = photo("coffee.png")  # 600x400
    box = run_op("crop", im, left=0.25, top=0.5, right=0.75, bottom=1.0)
    assert box.size == (300, 200)
    assert max_diff(box, im.crop((150, 200, 450, 400))) == 0
    square = run_op("crop", im, aspect="1:1")
    assert square.size == (400, 400)
    assert max_diff(square, im.crop((100, 0, 500, 400))) == 0
    assert run_op("crop", im, aspect="9:16").size == (225, 400)


# ---- watermark ----------------------------------------------------------------------------

_QUADRANTS = {
    "top_left": (0, 0, 0.5, 0.5),
    "top_right": (0.5, 0, 1, 0.5),
    "bottom_left": (0, 0.5, 0.5, 1),
    "bottom_right": (0.5, 0.5, 1, 1),
}


@pytest.mark.parametrize("position", sorted(_QUADRANTS))
def test_watermark_changes_only_the_chosen_corner(photo: Photo, position: str) -> None:
    im = photo("coffee.png")
    out = run_op("watermark_text", im, text="PixelBatch", position=position, opacity=0.8)
    bbox = ImageChops.difference(out, im).getbbox()
    assert bbox is not None, "nothing was drawn"
    fx0, fy0, fx1, fy1 = _QUADRANTS[position]
    w, h = im.size
    assert fx0 * w <= bbox[0] and bbox[2] <= fx1 * w
    assert fy0 * h <= bbox[1] and bbox[3] <= fy1 * h
    assert (bbox[2] - bbox[0]) > w * 0.1  # readable, not a speck


def test_watermark_centre_size_and_opacity(photo: Photo) -> None:
    im = photo("coffee.png")
    out = run_op("watermark_text", im, text="Hi", position="center", size=0.1, opacity=1.0)
    bbox = ImageChops.difference(out, im).getbbox()
    assert bbox is not None
    assert bbox[0] < 300 < bbox[2] and bbox[1] < 200 < bbox[3]
    assert 40 <= bbox[3] - bbox[1] <= 90  # font about 10% of the 600 px width
    faint = run_op("watermark_text", im, text="Hi", position="center", size=0.1, opacity=0.2)
    assert 0 < rms_diff(faint, im) < rms_diff(out, im) * 0.5
    invisible = run_op("watermark_text", im, text="Hi", opacity=0.0)
    assert max_diff(invisible, im) == 0


def test_watermark_long_text_is_shrunk_to_fit(photo: Photo) -> None:
    im = photo("chelsea.png")
    out = run_op("watermark_text", im, text="W" * 60, size=0.2, position="bottom_left")
    bbox = ImageChops.difference(out, im).getbbox()
    assert bbox is not None and bbox[0] > 0 and bbox[2] < im.width


def test_watermark_on_grayscale_and_rgba_keeps_mode(photo: Photo) -> None:
    grey = run_op("grayscale", photo("camera.png"))
    assert run_op("watermark_text", grey, text="x").mode == "L"
    rgba = photo("camera.png").convert("RGBA")
    assert run_op("watermark_text", rgba, text="x").mode == "RGBA"


# ---- params -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "params"),
    [
        ("brightness", {"amount": 101}),
        ("brightness", {"amount": "10"}),
        ("brightness", {"amount": float("nan")}),
        ("brightness", {"level": 5}),
        ("resize", {}),
        ("resize", {"max_width": 0}),
        ("resize", {"max_width": 100_000}),
        ("resize", {"max_width": 100, "upscale": 1}),
        ("fit", {"width": 100}),
        ("fit", {"width": True, "height": 10}),
        ("crop", {"left": 0.6, "right": 0.4}),
        ("crop", {"aspect": "wide"}),
        ("crop", {"aspect": "0:1"}),
        ("pad", {"width": 10, "height": 10, "color": "not-a-colour"}),
        ("watermark_text", {"text": ""}),
        ("watermark_text", {"text": "a\nb"}),
        ("watermark_text", {"text": "x" * 101}),
        ("watermark_text", {"text": "x", "position": "middle"}),
        ("watermark_text", {"text": "x", "opacity": 1.5}),
        ("encode", {"format": "gif"}),
        ("encode", {"quality": 0}),
        ("sharpen", {"amount": -1}),
    ],
)
def test_bad_params_are_rejected(op: str, params: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        OPS[op].bind(params)


def test_bind_fills_defaults_and_accepts_ints_for_floats() -> None:
    assert OPS["watermark_text"].bind({"text": "x", "opacity": 1}) == {
        "text": "x",
        "opacity": 1.0,
        "position": "bottom_right",
        "size": 0.04,
        "color": "#ffffff",
    }


def test_ops_do_not_modify_their_input(photo: Photo) -> None:
    im = photo("chelsea.png")
    before = im.copy()
    rng = random.Random(7)
    steps: list[tuple[str, dict[str, Any]]] = [
        ("watermark_text", {"text": "x"}),
        ("pad", {"width": 500, "height": 500}),
        ("brightness", {"amount": rng.randint(1, 50)}),
        ("denoise", {"strength": 4}),
    ]
    for name, params in steps:
        run_op(name, im, **params)
    assert max_diff(im, before) == 0
