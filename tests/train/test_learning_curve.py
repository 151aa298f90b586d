"""``dataprep learning-curve``: a fixed validation set, nested per-class subsets, one tiny
training run per size, and the CSV / PNG it writes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import CLASSES, class_image
from PIL import Image

from dataprep.cli import cli
from dataprep.errors import UsageError
from dataprep.train.learning_curve import learning_curve, parse_sizes

TINY = ["--model", "tiny_cnn", "--img-size", "32", "--short-side", "36", "--epochs", "1",
        "--batch-size", "4", "--lr", "0.05", "--workers", "0", "--jobs", "1",
        "--device", "cpu"]


def image_folder(root: Path, per_class: int, offset: int = 0) -> Path:
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / name / f"{i + offset:03d}.png").write_bytes(class_image(label, i + offset))
    return root


def keys(manifest: Path) -> set[str]:
    return {json.loads(line)["key"] for line in manifest.read_text().splitlines()}


def test_learning_curve_command(tmp_path):
    src = image_folder(tmp_path / "images", 10)
    out = tmp_path / "curve"
    result = CliRunner().invoke(cli, ["learning-curve", str(src), "--per-class", "4,2",
                                      "-o", str(out), "--ratio", "0.7", "--min-steps", "3",
                                      "--tta", "center,ten", *TINY])
    assert result.exit_code == 0, result.output
    with open(out / "learning_curve.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["per_class"]) for r in rows] == [2, 4]
    assert [int(r["train_images"]) for r in rows] == [6, 12]
    assert {int(r["val_images"]) for r in rows} == {9}  # one fixed val set: 3 of 10 per class
    assert [int(r["steps_per_epoch"]) for r in rows] == [3, 3]  # 6 // 4 = 1 and 12 // 4 = 3
    for r in rows:
        for m in ("center", "ten"):
            assert 0.0 <= float(r[f"top1_{m}"]) <= 1.0
            assert 0.0 <= float(r[f"class_mean_top1_{m}"]) <= 1.0
    assert Image.open(out / "learning_curve.png").size[0] > 300
    # nested subsets of the training part, never touching the validation part
    train, val = keys(out / "split" / "train.jsonl"), keys(out / "split" / "val.jsonl")
    small = keys(out / "n2" / "subset" / "train.jsonl") | keys(out / "n2" / "subset" / "val.jsonl")
    large = keys(out / "n4" / "subset" / "train.jsonl") | keys(out / "n4" / "subset" / "val.jsonl")
    assert len(small) == 6 and len(large) == 12 and small < large <= train
    assert not large & val
    assert (out / "n4" / "run" / "last.pt").exists()
    assert json.loads((out / "n2" / "metrics.json").read_text())["num_samples"] == 9
    assert "per class" in result.output and "chance" in result.output


def test_a_given_validation_folder_is_used_as_is(tmp_path):
    src = image_folder(tmp_path / "train", 5)
    val = image_folder(tmp_path / "val", 2, offset=100)
    kw = dict(per_class=[3], val=str(val), short_side=36, model="tiny_cnn", img_size=32,
              epochs=1, batch_size=4, workers=0, device="cpu", jobs=1)
    result = learning_curve(str(src), tmp_path / "curve", **kw)
    assert result.rows[0]["train_images"] == 9 and result.rows[0]["val_images"] == 6
    assert not (tmp_path / "curve" / "split").exists()
    # the same curve again, with one more mode: the finished training is evaluated, not redone
    last = tmp_path / "curve" / "n3" / "run" / "last.pt"
    stamp = last.stat().st_mtime_ns
    lines: list[str] = []
    again = learning_curve(str(src), tmp_path / "curve", **{**kw, "modes": "center,ten"},
                           log=lines.append)
    assert last.stat().st_mtime_ns == stamp and any("already holds" in x for x in lines)
    assert again.rows[0]["top1_center"] == result.rows[0]["top1_center"]
    assert "top1_ten" in again.rows[0]
    # another number of epochs is another training
    learning_curve(str(src), tmp_path / "curve", **{**kw, "epochs": 2}, log=lines.append)
    assert last.stat().st_mtime_ns != stamp


def test_bad_arguments():
    assert parse_sizes("100,10,20,10") == [10, 20, 100]
    for text in ("10,x", "0,5", ""):
        with pytest.raises(UsageError, match="--per-class"):
            parse_sizes(text)
    with pytest.raises(UsageError, match="unknown training option"):
        learning_curve("nowhere", "out", per_class=[1], cache_size=3)
