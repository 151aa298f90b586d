"""Decoding every mode to RGB, and bad inputs as data."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dataprep.cli import cli
from dataprep.errors import ImageError
from dataprep.io.decode import open_image
from dataprep.io.readers import iter_samples
from dataprep.jobs.tencrop import resize

EXIF_ORIENTATION = 0x0112


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` but holds no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def rotated_jpeg(encode, stored_w: int = 400, stored_h: int = 240) -> bytes:
    """JPEG stored landscape with orientation 6 (display = stored rotated 90 deg clockwise).

    The stored top-left block is pure red; everything else is mid gray.
    """
    arr = np.full((stored_h, stored_w, 3), 128, np.uint8)
    arr[:60, :60] = (255, 0, 0)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    return encode(Image.fromarray(arr), "JPEG", quality=95, exif=exif.tobytes())


def px(img: Image.Image, x: int, y: int) -> tuple[int, ...]:
    return tuple(int(v) for v in img.getpixel((x, y)))


def assert_close(got, want, tol: int = 3) -> None:
    assert all(abs(a - b) <= tol for a, b in zip(got, want, strict=True)), (got, want)


# --- conversions ---------------------------------------------------------------------------


def test_rgb_png_is_lossless(gradient, encode):
    img = gradient(101, 99)
    out = open_image(encode(img, "PNG"))
    assert out.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(out), np.asarray(img))


def test_grayscale_becomes_three_equal_channels(gradient, encode):
    gray = gradient(31, 17, "L")
    out = open_image(encode(gray, "PNG"))
    arr = np.asarray(out)
    assert out.mode == "RGB" and out.size == (31, 17)
    for c in range(3):
        np.testing.assert_array_equal(arr[..., c], np.asarray(gray))


def test_rgba_is_composited_on_white(encode):
    arr = np.zeros((4, 6, 4), np.uint8)
    arr[..., :3] = (0, 0, 0)
    arr[0, 0] = (0, 0, 0, 0)  # fully transparent black -> white
    arr[0, 1] = (200, 10, 10, 255)  # opaque red stays
    arr[0, 2] = (0, 0, 0, 128)  # half-transparent black -> mid gray
    arr[1:] = (0, 0, 255, 0)  # transparent blue -> white, not blue
    out = open_image(encode(Image.fromarray(arr, "RGBA"), "PNG"))
    assert out.mode == "RGB"
    assert px(out, 0, 0) == (255, 255, 255)
    assert px(out, 1, 0) == (200, 10, 10)
    assert_close(px(out, 2, 0), (127, 127, 127), tol=1)
    assert px(out, 3, 2) == (255, 255, 255)


def test_gray_with_alpha_is_composited_on_white(encode):
    img = Image.new("LA", (3, 2), (0, 0))
    img.putpixel((1, 0), (40, 255))
    out = open_image(encode(img, "PNG"))
    assert px(out, 0, 0) == (255, 255, 255)
    assert px(out, 1, 0) == (40, 40, 40)


def test_palette_with_transparency_is_composited_on_white(encode):
    img = Image.new("P", (5, 4), 1)
    img.putpalette([0, 0, 0] + [10, 120, 240] + [0, 0, 0] * 254)
    img.putpixel((0, 0), 0)
    img.putpixel((4, 3), 0)
    out = open_image(encode(img, "PNG", transparency=0))
    assert out.mode == "RGB"
    assert px(out, 0, 0) == (255, 255, 255)  # index 0 is transparent (its color is black)
    assert px(out, 4, 3) == (255, 255, 255)
    assert px(out, 2, 2) == (10, 120, 240)


def test_palette_gif_with_transparency(encode):
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 255, 0] + [250, 0, 0] + [0, 0, 0] * 254)
    img.putpixel((3, 3), 0)
    out = open_image(encode(img, "GIF", transparency=0))
    assert px(out, 3, 3) == (255, 255, 255)
    assert px(out, 0, 0) == (250, 0, 0)


def test_palette_without_transparency(gradient, encode):
    img = gradient(20, 10).quantize(64)
    out = open_image(encode(img, "PNG"))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(img.convert("RGB")))


def test_cmyk_jpeg_converts_to_rgb(gradient, encode):
    rgb = gradient(64, 48)
    data = encode(rgb.convert("CMYK"), "JPEG", quality=98)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = open_image(data)
    assert out.mode == "RGB" and out.size == (64, 48)
    # the smooth channels survive (the blue texture is too fine for a JPEG to keep exactly)
    diff = np.abs(np.asarray(out, np.int16)[..., :2] - np.asarray(rgb, np.int16)[..., :2])
    assert diff.mean() < 4


def test_16_bit_png_is_scaled_to_8_bits(encode):
    values = np.array([[0, 257, 25700, 65535]], np.uint16)  # -> 0, 1, 100, 255
    img = Image.fromarray(values)
    data = encode(img, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = open_image(data)
    assert out.mode == "RGB"
    assert [px(out, x, 0) for x in range(4)] == [(0,) * 3, (1,) * 3, (100,) * 3, (255,) * 3]


def test_16_bit_gradient_keeps_its_ramp(encode):
    ramp = (np.arange(256, dtype=np.uint32) * 257).astype(np.uint16)[None, :].repeat(3, axis=0)
    out = open_image(encode(Image.fromarray(ramp), "PNG"))
    np.testing.assert_array_equal(np.asarray(out)[1, :, 0], np.arange(256))


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "PA", "RGBA", "RGBX", "CMYK", "I", "F",
                                  "YCbCr", "LAB", "HSV"])
def test_every_mode_in_memory_becomes_rgb_of_the_same_size(gradient, mode):
    from dataprep.io.decode import _to_rgb

    img = gradient(9, 7).convert(mode)
    out = _to_rgb(img)
    assert out.mode == "RGB" and out.size == (9, 7)


def test_exif_orientation_6_rotates_and_the_corner_moves(encode):
    out = open_image(rotated_jpeg(encode))
    assert out.size == (240, 400)  # stored 400x240 landscape, displayed portrait
    assert_close(px(out, 239 - 10, 10), (255, 0, 0), tol=10)  # stored top-left -> top-right
    assert_close(px(out, 10, 10), (128, 128, 128), tol=10)
    assert_close(px(out, 10, 399 - 10), (128, 128, 128), tol=10)


@pytest.mark.parametrize("exact", [True, False])
def test_resize_job_honours_exif_orientation_in_both_decode_paths(tmp_path, encode, exact):
    folder = tmp_path / "src" / "c"
    folder.mkdir(parents=True)
    (folder / "rot.jpg").write_bytes(rotated_jpeg(encode))
    report = resize(tmp_path / "src", tmp_path / "out", short_side=100, exact=exact, jobs=1,
                    fmt="folder")
    assert report.samples_out == 1 and report.skipped == 0
    out = Image.open(tmp_path / "out" / "c" / "c__rot.jpg").convert("RGB")
    assert out.size == (100, 166)  # 400 * 100 / 240 = 166.7, truncated
    assert_close(px(out, 95, 4), (255, 0, 0), tol=25)
    assert_close(px(out, 4, 4), (128, 128, 128), tol=25)


# --- refusals ------------------------------------------------------------------------------


def test_truncated_jpeg_is_an_image_error(gradient, encode):
    data = encode(gradient(64, 64), "JPEG")
    with pytest.raises(ImageError, match="truncated"):
        open_image(data[: len(data) // 2])


@pytest.mark.parametrize("data", [b"", b"this is not an image\n"], ids=["empty", "text"])
def test_not_an_image_is_an_image_error(data):
    with pytest.raises(ImageError, match="not an image"):
        open_image(data)


def test_missing_file_is_an_image_error(tmp_path):
    with pytest.raises(ImageError, match="cannot open"):
        open_image(tmp_path / "missing.jpg")


def test_bomb_is_refused_from_the_header(gradient, encode):
    with pytest.raises(ImageError, match="bomb"):
        open_image(png_header_only(5000, 5000), max_pixels=1_000_000)
    # at the limit is fine
    assert open_image(encode(gradient(100, 10), "PNG"), max_pixels=1000).size == (100, 10)
    with pytest.raises(ImageError, match="bomb"):
        open_image(encode(gradient(100, 10), "PNG"), max_pixels=999)


def test_raising_max_pixels_admits_images_over_pillows_own_limit():
    """--max-pixels is the limit: Pillow's default (89M warning, 179M error) must not refuse
    a genuine 120-megapixel image first. The header-only PNG then fails as truncated data."""
    with pytest.raises(ImageError) as info:
        open_image(png_header_only(12_000, 10_000), max_pixels=200_000_000)
    assert "bomb" not in str(info.value) and "max-pixels" not in str(info.value)


# --- bad inputs in a job -------------------------------------------------------------------


@pytest.fixture
def messy_folder(tmp_path: Path, gradient, encode) -> Path:
    """Six good-but-unusual images and five unusable files in one class folder."""
    root = tmp_path / "messy"
    d = root / "things"
    d.mkdir(parents=True)
    good_jpeg = encode(gradient(80, 60), "JPEG")
    (d / "good.jpg").write_bytes(good_jpeg)
    (d / "cmyk.jpg").write_bytes(encode(gradient(70, 50).convert("CMYK"), "JPEG"))
    (d / "gray.png").write_bytes(encode(gradient(50, 70, "L"), "PNG"))
    (d / "rgba.png").write_bytes(encode(gradient(60, 60, "RGBA"), "PNG"))
    (d / "sixteen.png").write_bytes(
        encode(Image.fromarray((np.arange(60 * 40, dtype=np.uint16) * 20).reshape(40, 60)), "PNG"))
    palette = gradient(45, 45).quantize(16)
    (d / "palette.png").write_bytes(encode(palette, "PNG", transparency=0))
    (d / "rotated.jpg").write_bytes(rotated_jpeg(encode, 120, 72))
    # unusable
    (d / "truncated.jpg").write_bytes(good_jpeg[: len(good_jpeg) // 2])
    (d / "empty.jpg").write_bytes(b"")
    (d / "text.jpg").write_text("definitely not a JPEG\n")
    (d / "bomb.png").write_bytes(encode(Image.new("L", (3000, 3000)), "PNG"))
    (d / "header_only.png").write_bytes(png_header_only(64, 64))
    return root


BAD = {"truncated": "truncated", "empty": "not an image", "text": "not an image",
       "bomb": "bomb", "header_only": ""}


def test_bad_files_are_skipped_counted_and_listed(messy_folder, tmp_path):
    out = tmp_path / "out"
    report = resize(messy_folder, out, short_side=32, jobs=1, max_pixels=1_000_000)
    assert report.records_in == 12
    assert report.samples_out == 7
    assert report.skipped == 5
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    by_name = {Path(e["path"]).stem: e for e in errors}
    assert set(by_name) == set(BAD)
    for name, reason in BAD.items():
        e = by_name[name]
        assert e["reason"] and reason in e["reason"], e
        assert e["key"] == f"things__{name}" and e["split"] == "train"
        assert Path(e["path"]).is_absolute()
    stored = {s.key: s for s in iter_samples(out)}
    assert len(stored) == 7
    for s in stored.values():
        img = Image.open(io.BytesIO(s.image))
        assert img.mode == "RGB" and min(img.size) == 32
    assert Image.open(io.BytesIO(stored["things__rotated"].image)).size == (32, 53)
    assert Image.open(io.BytesIO(stored["things__gray"].image)).size == (32, 44)
    ledger = json.loads((out / "dataprep.json").read_text())["splits"]["train"]
    assert (ledger["records_in"], ledger["samples_out"], ledger["skipped"]) == (12, 7, 5)
    text = "\n".join(report.lines())
    assert "5 skipped" in text and "errors.jsonl" in text


def test_bad_files_in_tencrop_and_shard(messy_folder, tmp_path):
    from dataprep.jobs.shard import shard
    from dataprep.jobs.tencrop import tencrop

    report = tencrop(messy_folder, tmp_path / "t", short_side=32, crop=24, jobs=1,
                     max_pixels=1_000_000)
    assert (report.samples_out, report.skipped) == (70, 5)
    # shard stores original bytes: a header that parses is stored, unreadable headers are not
    report = shard(messy_folder, tmp_path / "s", jobs=1, max_pixels=1_000_000)
    lines = (tmp_path / "s" / "errors.jsonl").read_text().splitlines()
    errors = [json.loads(line) for line in lines]
    assert {Path(e["path"]).stem for e in errors} >= {"empty", "text", "bomb"}
    assert report.skipped == len(errors)


def test_on_error_raise_fails_cleanly(messy_folder, tmp_path):
    result = CliRunner().invoke(cli, ["resize", str(messy_folder), "-o", str(tmp_path / "out"),
                                      "--short-side", "32", "--jobs", "1", "--on-error", "raise",
                                      "--max-pixels", "1000000"])
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    assert "Error:" in result.output
    assert any(name in result.output for name in BAD)
    assert "Traceback" not in result.output
    # nothing half-written is left behind
    assert not list((tmp_path / "out").glob("*.tmp"))
    assert not list((tmp_path / "out").glob("*.tar"))


def test_skip_mode_through_the_cli(messy_folder, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["resize", str(messy_folder), "-o", str(out),
                                      "--short-side", "32", "--jobs", "1",
                                      "--max-pixels", "1000000"])
    assert result.exit_code == 0, result.output
    assert "5 skipped" in result.output
    assert len((out / "errors.jsonl").read_text().splitlines()) == 5


def test_bad_files_with_two_jobs_give_the_same_output_and_errors(messy_folder, tmp_path):
    for jobs in (1, 2):
        resize(messy_folder, tmp_path / f"j{jobs}", short_side=32, jobs=jobs,
               max_pixels=1_000_000)
    assert (tmp_path / "j1" / "errors.jsonl").read_text() == (
        tmp_path / "j2" / "errors.jsonl").read_text()
    assert (tmp_path / "j1" / "train-000000.tar").read_bytes() == (
        tmp_path / "j2" / "train-000000.tar").read_bytes()


def test_errors_of_several_splits_share_one_errors_file(messy_folder, tmp_path):
    out = tmp_path / "out"
    resize(messy_folder, out, short_side=32, jobs=1, max_pixels=1_000_000, split="train")
    resize(messy_folder, out, short_side=32, jobs=1, max_pixels=1_000_000, split="val")
    lines = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    assert sorted(e["split"] for e in lines) == ["train"] * 5 + ["val"] * 5
    # a rerun of one split replaces that split's lines only
    resize(messy_folder, out, short_side=40, jobs=1, max_pixels=1_000_000, split="val",
           overwrite=True)
    lines = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    assert sorted(e["split"] for e in lines) == ["train"] * 5 + ["val"] * 5


def test_premultiplied_la_is_composited_like_la():
    """Mode La (premultiplied luminance + alpha) converts as LA does: on white."""
    from dataprep.io.decode import _to_rgb

    la = Image.new("LA", (3, 2), (100, 128))
    assert _to_rgb(la.convert("La")).getpixel((0, 0)) == _to_rgb(la).getpixel((0, 0))
    # 100 * 128/255 + 255 * (1 - 128/255) = 177.2
    assert _to_rgb(la).getpixel((0, 0)) == (177, 177, 177)
