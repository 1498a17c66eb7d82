"""Decoding untrusted bytes: formats, modes, orientation, metadata, and every way it can fail."""

from __future__ import annotations

import io
import random
import struct
import time
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from PIL import EpsImagePlugin, Image, ImageChops, ImageCms, ImageStat
from pixelbatch.imaging.failures import ItemFailure
from pixelbatch.imaging.pipeline import Rendered, run_pipeline

Photo = Callable[[str], Image.Image]
ToBytes = Callable[..., bytes]

PNG_OUT = [{"name": "save", "op": "encode", "params": {"format": "png"}}]
JPEG_OUT = [{"name": "save", "op": "encode", "params": {"format": "jpeg", "quality": 95}}]


def run(data: bytes, steps: list[dict[str, Any]] | None = None, **kw: Any) -> Rendered:
    return run_pipeline(data, steps or PNG_OUT, {}, **kw)


def opened(out: Rendered) -> Image.Image:
    im = Image.open(io.BytesIO(out.data))
    im.load()
    return im


def failure(data: bytes, **kw: Any) -> ItemFailure:
    with pytest.raises(ItemFailure) as info:
        run(data, **kw)
    return info.value


def px(im: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    value = im.getpixel(xy)
    assert isinstance(value, tuple)
    return value


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    diff = ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB")))
    return sum(diff.mean) / 3


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def png_header_claiming(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG start that declares a huge canvas."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


# ---- orientation and metadata -------------------------------------------------------------


def test_exif_orientation_6_is_applied(photo: Photo, to_bytes: ToBytes) -> None:
    im = photo("chelsea.png")  # 451x300 landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    out = run(to_bytes(im, "JPEG", quality=95, exif=exif))
    assert (out.width, out.height) == (300, 451)
    upright = im.transpose(Image.Transpose.ROTATE_270)
    assert mean_abs_diff(opened(out), upright) < 4
    assert mean_abs_diff(opened(out), im.resize((300, 451))) > 20


def test_outputs_carry_no_exif_or_xmp(photo: Photo, to_bytes: ToBytes) -> None:
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x0112] = 3
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">secret-location</x:xmpmeta>'
    data = to_bytes(photo("rocket.jpg"), "JPEG", exif=exif, xmp=xmp)
    assert b"SecretCam" in data and b"secret-location" in data
    for fmt in ("jpeg", "png", "webp"):
        out = run(data, [{"name": "s", "op": "encode", "params": {"format": fmt}}])
        assert b"SecretCam" not in out.data and b"secret-location" not in out.data
        assert not opened(out).getexif()


def test_rgb_icc_profile_is_kept_and_dropped_for_grey_output(
    photo: Photo, to_bytes: ToBytes
) -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = to_bytes(photo("coffee.png"), "JPEG", icc_profile=icc)
    assert opened(run(data)).info.get("icc_profile") == icc
    grey: list[dict[str, Any]] = [{"name": "g", "op": "grayscale"}, *PNG_OUT]
    assert "icc_profile" not in opened(run(data, grey)).info


# ---- input formats and modes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("PNG", {}),
        ("JPEG", {"quality": 95}),
        ("WEBP", {"lossless": True}),
        ("BMP", {}),
        ("TIFF", {"compression": "tiff_lzw"}),
    ],
)
def test_allowed_formats_decode_to_the_same_picture(
    photo: Photo, to_bytes: ToBytes, fmt: str, options: dict[str, Any]
) -> None:
    im = photo("astronaut.png")
    out = run(to_bytes(im, fmt, **options))
    assert (out.width, out.height) == im.size
    assert mean_abs_diff(opened(out), im) < 2


def test_mpo_decodes_its_first_frame(photo: Photo, to_bytes: ToBytes) -> None:
    left, right = (
        photo("chelsea.png"),
        photo("chelsea.png").transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    )
    data = to_bytes(left, "MPO", save_all=True, append_images=[right])
    assert mean_abs_diff(opened(run(data)), left) < 3


def test_cmyk_jpeg_comes_out_rgb_with_the_right_colours(photo: Photo, to_bytes: ToBytes) -> None:
    im = photo("coffee.png")
    out = opened(run(to_bytes(im.convert("CMYK"), "JPEG", quality=95)))
    assert out.mode == "RGB"
    assert mean_abs_diff(out, im) < 8


def _sixteen_bit(im: Image.Image) -> Image.Image:
    return im.convert("L").convert("I").point(lambda v: v * 257).convert("I;16")


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_greyscale_is_scaled_not_clipped(photo: Photo, to_bytes: ToBytes, fmt: str) -> None:
    grey = photo("camera.png").convert("L")
    deep = _sixteen_bit(grey)
    assert deep.getextrema() == (0, 65535)
    data = to_bytes(deep, fmt)
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    out = opened(run(data))
    assert mean_abs_diff(out, grey) < 1.5


def test_32_bit_int_and_float_images_are_scaled(photo: Photo, to_bytes: ToBytes) -> None:
    grey = photo("camera.png").convert("L")
    as_int = grey.convert("I").point(lambda v: v * 257)  # 16-bit range in a 32-bit image
    as_float = grey.convert("F").point(lambda v: v / 255)  # 0..1 floats
    for deep in (as_int, as_float):
        assert mean_abs_diff(opened(run(to_bytes(deep, "TIFF"))), grey) < 1.5


def test_palette_with_transparency_keeps_alpha_in_png(photo: Photo, to_bytes: ToBytes) -> None:
    im = photo("coffee.png").convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    im.info["transparency"] = im.getpixel((0, 0))
    out = opened(run(to_bytes(im, "PNG", transparency=im.getpixel((0, 0)))))
    assert out.mode == "RGBA"
    assert px(out, (0, 0))[3] == 0
    assert ImageStat.Stat(out.getchannel("A")).mean[0] > 128  # most of the photo is opaque


def test_animated_gif_uses_the_first_frame(to_bytes: ToBytes) -> None:
    frames = [Image.new("RGB", (64, 48), c) for c in ("red", "lime", "blue")]
    data = to_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    out = opened(run(data))
    assert out.size == (64, 48)
    assert out.convert("RGB").getpixel((10, 10)) == (255, 0, 0)


def test_la_and_bilevel_inputs(photo: Photo, to_bytes: ToBytes) -> None:
    la = photo("camera.png").convert("LA")
    assert opened(run(to_bytes(la, "PNG"))).mode == "RGBA"
    bilevel = photo("camera.png").convert("1")
    out = opened(run(to_bytes(bilevel, "BMP")))
    assert out.mode == "RGB"
    histogram = out.getchannel("R").histogram()
    assert sum(histogram[1:255]) == 0 and histogram[0] > 0 and histogram[255] > 0


def test_transparent_input_is_flattened_on_white_for_jpeg(to_bytes: ToBytes) -> None:
    im = Image.new("RGBA", (80, 40), (200, 20, 20, 255))
    im.paste((0, 0, 0, 0), (0, 0, 40, 40))  # left half fully transparent black
    out = opened(run(to_bytes(im, "PNG"), JPEG_OUT))
    assert out.mode == "RGB"
    assert min(px(out, (10, 20))) >= 250
    r, g, _ = px(out, (70, 20))
    assert r > 180 and g < 50


# ---- rejected inputs ------------------------------------------------------------------------


def test_eps_and_pdf_are_unsupported_and_their_parsers_never_run(
    photo: Photo, to_bytes: ToBytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail_if_called(*_: object) -> None:
        raise AssertionError("EPS parser ran on untrusted input")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", fail_if_called)
    im = photo("rocket.jpg")
    for fmt in ("EPS", "PDF"):
        err = failure(to_bytes(im, fmt))
        assert err.code == "unsupported_format", fmt
        assert err.message == "图片格式不支持"


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
        b'  <svg xmlns="http://www.w3.org/2000/svg"><rect width="5" height="5"/></svg>',
        b"8BPS\x00\x01" + b"\x00" * 40,  # Photoshop
        b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 32,
    ],
)
def test_other_image_formats_are_unsupported(data: bytes) -> None:
    assert failure(data).code == "unsupported_format"


def test_ico_is_unsupported(photo: Photo, to_bytes: ToBytes) -> None:
    assert failure(to_bytes(photo("astronaut.png"), "ICO")).code == "unsupported_format"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, this is a text file\n",
        b"<html><body>404 not found</body></html>",
        random.Random(1).randbytes(5000),
        random.Random(2).randbytes(64),
    ],
)
def test_non_images_are_not_an_image(data: bytes) -> None:
    err = failure(data)
    assert err.code == "not_an_image"
    assert err.message == "图片格式不支持"
    assert not err.retryable


def test_truncated_jpeg_and_png_are_corrupt(
    chelsea_jpeg: bytes, photo: Photo, to_bytes: ToBytes
) -> None:
    assert failure(chelsea_jpeg[: len(chelsea_jpeg) // 2]).code == "corrupt_image"
    png = to_bytes(photo("chelsea.png"), "PNG")
    err = failure(png[: len(png) // 2])
    assert (err.code, err.message) == ("corrupt_image", "图片已损坏，无法解码")


def test_allowed_magic_with_garbage_is_corrupt() -> None:
    garbage = random.Random(3).randbytes(200)
    assert failure(b"\x89PNG\r\n\x1a\n" + garbage).code == "corrupt_image"
    assert failure(b"\xff\xd8\xff\xe0" + garbage).code == "corrupt_image"


def test_png_with_bad_crc_in_pixel_data_is_corrupt(photo: Photo, to_bytes: ToBytes) -> None:
    png = bytearray(to_bytes(photo("camera.png"), "PNG"))
    idat = png.index(b"IDAT")
    png[idat + 200 : idat + 240] = bytes(40)
    assert failure(bytes(png)).code == "corrupt_image"


# 10000x10000 is between Pillow's warning and error limits: it warns, we reject
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("side", [60_000, 10_000, 8_000])
def test_pixel_bomb_headers_are_rejected_before_decoding(side: int) -> None:
    start = time.perf_counter()
    err = failure(png_header_claiming(side, side))
    assert (err.code, err.message) == ("too_many_pixels", "图片像素过多")
    assert time.perf_counter() - start < 0.5


def test_real_large_canvas_that_compresses_small_is_rejected(to_bytes: ToBytes) -> None:
    data = to_bytes(Image.new("1", (8000, 7000)), "PNG")  # 56 MP in a few kilobytes
    assert len(data) < 100_000
    assert failure(data).code == "too_many_pixels"


def test_max_pixels_is_configurable(chelsea_jpeg: bytes) -> None:
    assert failure(chelsea_jpeg, max_pixels=100_000).code == "too_many_pixels"
    assert run(chelsea_jpeg, max_pixels=451 * 300).width == 451
