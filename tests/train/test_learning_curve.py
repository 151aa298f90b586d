"""``dataprep learning-curve``: one fixed test split, per-run draws with their own inner
validation split, repeats with a spread, the log-linear trend, and the files it writes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import CLASSES, class_image
from PIL import Image

from dataprep.cli import cli
from dataprep.errors import UsageError
from dataprep.train.curve_output import fit_log_linear, slope_line, summarize
from dataprep.train.learning_curve import learning_curve, parse_sizes

TINY = ["--model", "tiny_cnn", "--img-size", "32", "--short-side", "36", "--epochs", "3",
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


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_learning_curve_with_repeats_and_inner_validation(tmp_path):
    src = image_folder(tmp_path / "images", 10)
    out = tmp_path / "curve"
    result = CliRunner().invoke(cli, ["learning-curve", str(src), "--per-class", "5,2",
                                      "-o", str(out), "--ratio", "0.7", "--repeats", "2",
                                      "--patience", "1", "--min-steps", "3",
                                      "--tta", "center,ten", *TINY])
    assert result.exit_code == 0, result.output
    assert "no validation shards" not in result.output  # every run validates on its own
    rows = read_csv(out / "learning_curve.csv")
    runs = read_csv(out / "learning_curve_runs.csv")
    assert [int(r["per_class"]) for r in rows] == [2, 5]
    assert [int(r["repeats"]) for r in rows] == [2, 2]
    assert [(int(r["per_class"]), int(r["seed"])) for r in runs] == \
        [(2, 0), (2, 1), (5, 0), (5, 1)]
    # N drawn per class, an inner share validates: 2 -> 1 + 1, 5 -> 4 + 1 (x 3 classes)
    assert [(int(r["train_images"]), int(r["val_images"])) for r in rows] == [(3, 3), (12, 3)]
    assert {int(r["test_images"]) for r in runs} == {9}  # 3 of 10 per class, every run
    assert {r["checkpoint"] for r in runs} == {"best.pt"}
    for r in runs:
        assert 1 <= int(r["best_epoch"]) <= int(r["epochs_run"]) <= 3
        assert r["stopped"] in ("completed", "early_stop")
    # the fixed test split is disjoint from every draw; inner val disjoint from train
    pool, test = keys(out / "split" / "train.jsonl"), keys(out / "split" / "val.jsonl")
    draws = {}
    for n in (2, 5):
        for s in (0, 1):
            sub = out / f"n{n}" / f"seed{s}" / "subset"
            tr, va = keys(sub / "train.jsonl"), keys(sub / "val.jsonl")
            assert not tr & va and not (tr | va) & test and (tr | va) <= pool
            assert len(tr | va) == 3 * n
            draws[n, s] = tr | va
            assert (out / f"n{n}" / f"seed{s}" / "run" / "best.pt").exists()
            metrics = json.loads((out / f"n{n}" / f"seed{s}" / "metrics.json").read_text())
            assert metrics["num_samples"] == 9
    assert draws[2, 0] < draws[5, 0] and draws[2, 1] < draws[5, 1]  # nested within a seed
    assert draws[5, 0] != draws[5, 1]  # another seed, another subset
    # the summary is the runs' mean, std (ddof=1), min and max
    for row in rows:
        mine = [float(r["top1_ten"]) for r in runs if r["per_class"] == row["per_class"]]
        assert float(row["top1_ten"]) == pytest.approx(np.mean(mine), abs=1e-6)
        assert float(row["top1_ten_std"]) == pytest.approx(np.std(mine, ddof=1), abs=1e-6)
        assert float(row["top1_ten_min"]) == pytest.approx(min(mine), abs=1e-6)
        assert float(row["top1_ten_max"]) == pytest.approx(max(mine), abs=1e-6)
    doc = json.loads((out / "learning_curve.json").read_text())
    slope, intercept = np.polyfit(np.log2([2, 5]), [r["top1_center"] for r in doc["rows"]], 1)
    assert doc["fit"]["slope"] == pytest.approx(slope, abs=1e-9)
    assert doc["fit"]["intercept"] == pytest.approx(intercept, abs=1e-9)
    assert f"{100 * slope:+.1f} points of top-1 per doubling" in result.output
    slope, _ = np.polyfit(np.log2([2, 5]),
                          [r["class_mean_top1_center"] for r in doc["rows"]], 1)
    assert doc["fit_class_mean"]["slope"] == pytest.approx(slope, abs=1e-9)
    assert f"{100 * slope:+.1f} points of class-mean top-1 per doubling" in result.output
    assert Image.open(out / "learning_curve.png").size[0] > 500


def test_fit_against_numpy_polyfit():
    sizes = [10, 20, 40, 80, 160]
    top1 = [0.31, 0.42, 0.50, 0.61, 0.66]
    slope, intercept = fit_log_linear(sizes, top1)
    ref = np.polyfit(np.log2(sizes), top1, 1)
    assert slope == pytest.approx(ref[0], abs=1e-12)
    assert intercept == pytest.approx(ref[1], abs=1e-12)
    # exactly log-linear: +7 points per doubling
    slope, intercept = fit_log_linear([5, 10, 20], [0.2, 0.27, 0.34])
    assert slope == pytest.approx(0.07) and intercept == pytest.approx(0.2 - 0.07 * np.log2(5))
    line = slope_line({"mode": "center", "slope": slope, "intercept": intercept,
                       "points_per_doubling": 100 * slope, "per_class": [5, 10, 20]})
    assert line.startswith("+7.0 points of top-1 per doubling of images per class")
    with pytest.raises(UsageError, match="two or more"):
        fit_log_linear([10, 10], [0.1, 0.2])
    s = summarize([0.5, 0.6, 0.8])
    assert s["std"] == pytest.approx(np.std([0.5, 0.6, 0.8], ddof=1))
    assert (s["min"], s["max"]) == (0.5, 0.8) and summarize([0.4])["std"] == 0.0


def test_a_given_test_folder_without_inner_validation(tmp_path, caplog):
    src = image_folder(tmp_path / "train", 5)
    test = image_folder(tmp_path / "test", 2, offset=100)
    kw = dict(per_class=[3], test=str(test), short_side=36, model="tiny_cnn", img_size=32,
              epochs=1, batch_size=4, workers=0, device="cpu", jobs=1, inner_val=0)
    result = learning_curve(str(src), tmp_path / "curve", **kw)
    run = result.runs[0]
    assert (run["train_images"], run["val_images"], run["test_images"]) == (9, 0, 6)
    assert run["checkpoint"] == "last.pt"
    assert not (tmp_path / "curve" / "split").exists()
    assert "no validation shards" not in caplog.text
    assert result.fit is None  # one size: no trend
    # the same curve again, with one more mode: the finished training is scored, not redone
    last = tmp_path / "curve" / "n3" / "seed0" / "run" / "last.pt"
    stamp = last.stat().st_mtime_ns
    lines: list[str] = []
    again = learning_curve(str(src), tmp_path / "curve", **{**kw, "modes": "center,ten"},
                           log=lines.append)
    assert last.stat().st_mtime_ns == stamp and any("already holds" in x for x in lines)
    assert again.rows[0]["top1_center"] == result.rows[0]["top1_center"]
    assert "top1_ten" in again.rows[0]
    # another number of epochs is another training; --val is the older name of --test
    learning_curve(str(src), tmp_path / "curve", **{**kw, "epochs": 2, "test": None,
                                                    "val": str(test)}, log=lines.append)
    assert last.stat().st_mtime_ns != stamp


def test_bad_arguments():
    assert parse_sizes("100,10,20,10") == [10, 20, 100]
    for text in ("10,x", "0,5", ""):
        with pytest.raises(UsageError, match="--per-class"):
            parse_sizes(text)
    with pytest.raises(UsageError, match="unknown training option"):
        learning_curve("nowhere", "out", per_class=[1], cache_size=3)
    with pytest.raises(UsageError, match="inner validation"):
        learning_curve("nowhere", "out", per_class=[1, 4])
    with pytest.raises(UsageError, match="--patience"):
        learning_curve("nowhere", "out", per_class=[4], inner_val=0, patience=2)
    with pytest.raises(UsageError, match="--repeats"):
        learning_curve("nowhere", "out", per_class=[4], repeats=0)


def test_test_images_in_src_are_left_out(tmp_path):
    """SRC holding byte copies of the --test images (other names) never trains on them; a
    --test equal to SRC leaves nothing to train on: a one-line error."""
    import hashlib
    import shutil

    src = image_folder(tmp_path / "train", 3)
    test = image_folder(tmp_path / "test", 2, offset=100)
    for name in CLASSES:
        for f in sorted((test / name).iterdir()):
            shutil.copy(f, src / name / f"copy_{f.name}")
    digest = lambda p: hashlib.sha256(Path(p).read_bytes()).hexdigest()  # noqa: E731
    test_hashes = {digest(p) for p in test.rglob("*.png")}
    lines: list[str] = []
    kw = dict(per_class=[5], short_side=36, model="tiny_cnn", img_size=32, epochs=1,
              batch_size=4, workers=0, device="cpu", jobs=1, inner_val=0)
    result = learning_curve(str(src), tmp_path / "curve", test=str(test), log=lines.append,
                            **kw)
    n = 2 * len(CLASSES)
    assert any(f"{n} training images are also in the test split" in x for x in lines), lines
    assert result.runs[0]["train_images"] == 3 * len(CLASSES)
    subset = tmp_path / "curve" / "n5" / "seed0" / "subset"
    drawn = [json.loads(x)["path"] for m in subset.glob("*.jsonl")
             for x in m.read_text().splitlines()]
    assert len(drawn) == 3 * len(CLASSES)
    assert not {digest(p) for p in drawn} & test_hashes
    with pytest.raises(UsageError, match="no training image of class"):
        learning_curve(str(src), tmp_path / "curve2", test=str(src), **kw)
