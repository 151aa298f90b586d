"""preview: the contact sheet's size, content, options and recipe handling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dataprep.cli import cli
from dataprep.jobs.preview import BACKGROUND, GAP, GROUP_GAP, LINE, MARGIN, pick_records
from dataprep.records import Record

REPO = Path(__file__).resolve().parent.parent


def invoke(*args) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def expected_size(rows: int, groups: list[int], cell: int) -> tuple[int, int]:
    columns = sum(groups)
    width = 2 * MARGIN + columns * cell + (columns - len(groups)) * GAP + \
        (len(groups) - 1) * GROUP_GAP
    height = 2 * MARGIN + 2 * LINE + LINE + rows * (LINE + cell + GAP)  # 2 caption lines
    return width, height


def test_sheet_has_the_expected_size_and_content(image_folder, tmp_path):
    out = tmp_path / "grid.png"
    output = invoke("preview", image_folder, "-o", out, "--count", "2", "--copies", "3",
                    "--cell", "40", "--short-side", "32", "--crop", "24", "--color-jitter",
                    "0.4", "--hflip")
    img = Image.open(out)
    assert img.format == "PNG" and img.mode == "RGB"
    assert img.size == expected_size(2, [1, 10, 3], 40)
    assert "2 images x 14 columns" in output
    pixels = np.asarray(img)
    top = MARGIN + 3 * LINE + LINE  # first row of thumbnails
    # every thumbnail cell holds image content, not the sheet's background
    x = MARGIN
    for group in (1, 10, 3):
        for _ in range(group):
            cell = pixels[top:top + 40, x:x + 40]
            assert not np.all(cell == BACKGROUND)
            x += 40 + GAP
        x += GROUP_GAP - GAP
    # the copies are augmented: two copies of one image differ
    first_copy = MARGIN + 11 * (40 + GAP) + 2 * (GROUP_GAP - GAP)
    a = pixels[top:top + 40, first_copy:first_copy + 40]
    b = pixels[top:top + 40, first_copy + 44:first_copy + 84]
    assert not np.array_equal(a, b)


def test_no_views_five_views_and_palette(image_folder, tmp_path):
    out = tmp_path / "a.png"
    invoke("preview", image_folder, "-o", out, "-n", "1", "-k", "2", "--no-views", "--cell",
           "32", "--rotate", "15")
    assert Image.open(out).size == expected_size(1, [1, 2], 32)
    out = tmp_path / "b.png"
    invoke("preview", image_folder, "-o", out, "-n", "3", "-k", "0", "--five", "--cell", "32",
           "--short-side", "32", "--crop", "24", "--colors", "64")
    img = Image.open(out)
    assert img.size == expected_size(3, [1, 5], 32) and img.mode == "P"


def test_preview_without_augmentation_shows_views_only(image_folder, tmp_path):
    out = tmp_path / "c.png"
    invoke("preview", image_folder, "-o", out, "-n", "1", "--cell", "32")  # views 256 / 224
    assert Image.open(out).size == expected_size(1, [1, 10], 32)
    # --crop alone is augment's random crop: the copies appear
    invoke("preview", image_folder, "-o", out, "-n", "1", "-k", "2", "--cell", "32",
           "--short-side", "32", "--crop", "24")
    assert Image.open(out).size == expected_size(1, [1, 10, 2], 32)


def test_preview_reads_an_augment_recipe(image_folder, tmp_path):
    out = tmp_path / "vgg.png"
    output = invoke("preview", image_folder, "-o", out, "--recipe",
                    REPO / "recipes" / "scale-jitter-vgg.toml", "-n", "1", "--cell", "24",
                    "--no-views")
    # copies = 4 comes from the recipe's [augment] table; format/quality are ignored
    assert Image.open(out).size == expected_size(1, [1, 4], 24)
    assert "1 images x 5 columns" in output


def test_preview_recipe_with_an_unknown_key_is_refused(image_folder, tmp_path):
    recipe = tmp_path / "p.toml"
    recipe.write_text("[preview]\ncount = 2  # rows\nzoom = 3  # not a flag\n")
    result = CliRunner().invoke(cli, ["preview", str(image_folder), "-o",
                                      str(tmp_path / "x.png"), "--recipe", str(recipe)])
    assert result.exit_code == 2 and "zoom" in result.output


@pytest.mark.parametrize("args, words", [
    (("-o", "grid.gif"), ".png"),
    (("-o", "grid.jpg", "--colors", "16", "--hflip"), "palette"),
    (("-o", "grid.png", "--short-side", "100", "--crop", "200"), "--crop 200"),
])
def test_preview_errors(image_folder, tmp_path, args, words):
    args = tuple(str(tmp_path / a) if a.startswith("grid") else a for a in args)
    result = CliRunner().invoke(cli, ["preview", str(image_folder), *args])
    assert result.exit_code != 0 and words in result.output


def test_pick_records_spreads_over_classes():
    recs = [Record(f"{c}{i}", "", label, c) for label, c in enumerate("abc") for i in range(3)]
    assert [r.key for r in pick_records(recs, 5)] == ["a0", "b0", "c0", "a1", "b1"]
    assert len(pick_records(recs, 50)) == 9


def test_docs_preview_is_small_and_linked_from_the_readme():
    doc = REPO / "docs" / "preview.png"
    assert doc.is_file() and doc.stat().st_size < 300_000
    with Image.open(doc) as img:
        assert img.format == "PNG"
    assert "docs/preview.png" in (REPO / "README.md").read_text()
