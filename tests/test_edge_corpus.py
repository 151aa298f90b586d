"""The edge-case files in tests/data/edge (real files from Pillow's and scikit-image's test
suites; provenance in SOURCES.tsv): no crash, every file either converted correctly or listed
with a reason. (``bombs/pil__decompression_bomb_extents.gif`` is a 100x100 GIF whose frame
extents are huge; Pillow clips them, so it decodes to 100x100 in bounded memory.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dataprep.cli import cli

EDGE = Path(__file__).resolve().parent / "data" / "edge"
REFUSED = {  # file -> a word its reason must contain
    "bombs/pil__decompression_bomb.gif": "bomb",
    "corrupt/pil__bmpsuite_bad_reallybig.bmp": "bomb",
    "corrupt/pil__broken.png": "not an image",
    "corrupt/pil__zero_width.gif": "not an image",
    "corrupt/pil__truncated_jpeg.jpg": "truncated",
    "corrupt/ski__truncated.jpg": "runcated",
    "corrupt/pil__png_decompression_dos.png": "too large",
}


@pytest.fixture(scope="module")
def resized(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("edge") / "out"
    result = CliRunner().invoke(cli, ["resize", str(EDGE), "-o", str(out), "--format", "folder",
                                      "--short-side", "64", "--upscale", "--image-format",
                                      "png", "--jobs", "2"])
    return out, result


def test_resize_over_the_edge_corpus(resized):
    out, result = resized
    assert result.exit_code == 0, result.output
    files = sorted(str(p.relative_to(EDGE)) for p in EDGE.rglob("*")
                   if p.is_file() and p.suffix != ".tsv")
    errors = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    refused = {str(Path(e["path"]).relative_to(EDGE)): e["reason"] for e in errors}
    assert set(refused) == set(REFUSED)
    for name, word in REFUSED.items():
        assert word in refused[name], (name, refused[name])
    written = sorted(out.rglob("*.png"))
    assert len(written) == len(files) - len(REFUSED)
    for path in written:
        with Image.open(path) as img:
            assert img.mode == "RGB" and min(img.size) == 64


def test_every_exif_orientation_gives_the_upright_image(resized):
    out, result = resized
    assert result.exit_code == 0, result.output
    views = {p.stem: np.asarray(Image.open(p), dtype=np.int16)
             for p in (out / "exif_orientation").glob("*hopper*.png")}
    upright = views.pop("exif_orientation__pil__hopper")
    assert len(views) == 8  # orientations 2-8 (jpg) and 6 (webp)
    for name, arr in views.items():
        assert arr.shape == upright.shape, name
        # the same picture up to JPEG noise; a wrong turn or mirror is far off
        assert np.abs(arr - upright).mean() < 10, name
        assert np.abs(arr[:, ::-1] - upright).mean() > 20, name
        assert np.abs(np.rot90(arr) - upright).mean() > 20, name


def test_cmyk_palette_alpha_and_16_bit_files_convert_to_sensible_rgb(tmp_path):
    from dataprep.io.decode import open_image

    cmyk = open_image(EDGE / "cmyk" / "pil__pil_sample_cmyk.jpg")
    ref = Image.open(EDGE / "cmyk" / "pil__pil_sample_cmyk.jpg").convert("RGB")
    assert np.array_equal(np.asarray(cmyk), np.asarray(ref))  # Pillow's own Adobe handling
    rose = np.asarray(open_image(EDGE / "png16" / "im__rose-over.png"))
    assert rose.dtype == np.uint8 and rose.max() > 128  # scaled from 16 bits, not clipped to 0
    trns = np.asarray(open_image(EDGE / "alpha" / "pil__transparent.png"))
    alpha = np.asarray(Image.open(EDGE / "alpha" / "pil__transparent.png").convert("RGBA"))[..., 3]
    assert (trns[alpha == 0] == 255).all()  # fully transparent pixels become white
