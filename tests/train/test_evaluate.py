"""``dataprep evaluate``: test-time modes against hand computations with torchvision's own
crops, the confusion matrix against a direct count, the report files, and the command on a
checkpoint of a real ``dataprep train`` run."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from click.testing import CliRunner
from conftest import CLASSES, class_image, make_shards, samples, write_split
from PIL import Image

from dataprep.cli import cli
from dataprep.errors import UsageError
from dataprep.records import Sample
from dataprep.train.eval_report import confusion_matrix, row_normalized, write_report
from dataprep.train.evaluate import (
    LoadedModel,
    evaluate_model,
    label_map,
    load_model,
    read_tags,
    sample_tags,
)
from dataprep.train.tta import MODES, VIEWS, ViewSpec, mode_views, parse_modes, predict

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SPEC = ViewSpec(crop=24, short_side=28)


class Fixed(torch.nn.Module):
    """A tiny fixed-weight network whose output depends on where the pixels are (conv + a
    linear over a 3x3 pooled map), so different crops give different probabilities."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2)
        self.fc = torch.nn.Linear(4 * 9, num_classes)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(x)), 3)
        return self.fc(x.flatten(1))


def gradient_image(w: int, h: int, seed: int) -> Image.Image:
    """Visible gradients plus noise: a wrong crop offset or a missing flip changes pixels."""
    rng = np.random.default_rng(seed)
    x = np.arange(w)[None, :, None] * 255 // max(w - 1, 1)
    y = np.arange(h)[:, None, None] * 255 // max(h - 1, 1)
    arr = np.concatenate([np.broadcast_to(x, (h, w, 1)), np.broadcast_to(y, (h, w, 1)),
                          rng.integers(0, 255, (h, w, 1))], axis=2)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


IMAGES = [gradient_image(37, 30, 0), gradient_image(30, 41, 1), gradient_image(28, 28, 2)]


def softmax_of(model: torch.nn.Module, views: list[Image.Image]) -> torch.Tensor:
    """Hand computation: each view -> tensor -> (x - mean) / std -> softmax; (V, C)."""
    model.eval()
    x = torch.stack([TF.normalize(TF.to_tensor(v), MEAN, STD) for v in views])
    with torch.no_grad():
        return torch.softmax(model(x), dim=1)


def fitted(img: Image.Image) -> Image.Image:
    return TF.resize(img, SPEC.short_side)  # torchvision: shorter side -> 28, PIL bilinear


def run(mode: str, model: torch.nn.Module | None = None) -> torch.Tensor:
    return predict(model or Fixed(), IMAGES, mode, SPEC, mean=MEAN, std=STD, batch_size=5)


def test_ten_is_the_mean_softmax_of_torchvisions_ten_crops():
    model = Fixed()
    want = torch.stack([softmax_of(model, list(TF.ten_crop(fitted(img), SPEC.crop))).mean(0)
                        for img in IMAGES])
    got = run("ten", model)
    assert got.shape == (3, 3)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    # and the views themselves, pixel for pixel and in ten-crop order
    for img in IMAGES:
        ours = mode_views(img, "ten", SPEC)
        theirs = TF.ten_crop(fitted(img), SPEC.crop)
        assert [np.asarray(v).tolist() for v in ours] == [np.asarray(v).tolist() for v in theirs]
    # the views really differ: a mode that averaged one view ten times would fail above
    assert not torch.allclose(run("center", model), got, atol=1e-4)


def test_mix_weighs_the_squashed_image_and_the_five_crop_mean_equally():
    model = Fixed()
    want = []
    for img in IMAGES:
        squashed = softmax_of(model, [TF.resize(img, [SPEC.crop, SPEC.crop])])[0]
        five = softmax_of(model, list(TF.five_crop(fitted(img), SPEC.crop))).mean(0)
        want.append((squashed + five) / 2)
    got = run("mix", model)
    torch.testing.assert_close(got, torch.stack(want), rtol=0, atol=1e-6)
    plain = torch.stack([softmax_of(model, mode_views(img, "mix", SPEC)).mean(0)
                         for img in IMAGES])
    assert not torch.allclose(got, plain, atol=1e-4)  # 1:1, not 1:5


@pytest.mark.parametrize("mode", ["resize", "center", "flip", "five"])
def test_other_modes_match_torchvision(mode):
    model = Fixed()
    want = []
    for img in IMAGES:
        center = TF.center_crop(fitted(img), SPEC.crop)
        views = {"resize": [TF.resize(img, [SPEC.crop, SPEC.crop])], "center": [center],
                 "flip": [center, TF.hflip(center)],
                 "five": list(TF.five_crop(fitted(img), SPEC.crop))}[mode]
        assert len(views) == VIEWS[mode]
        want.append(softmax_of(model, views).mean(0))
    torch.testing.assert_close(run(mode, model), torch.stack(want), rtol=0, atol=1e-6)


def test_probabilities_do_not_depend_on_the_batch_size():
    model = Fixed()
    a = predict(model, IMAGES, "ten", SPEC, mean=MEAN, std=STD, batch_size=1)
    b = predict(model, IMAGES, "ten", SPEC, mean=MEAN, std=STD, batch_size=64)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    torch.testing.assert_close(a.sum(1), torch.ones(3))


def test_parse_modes():
    assert parse_modes("ten, center,ten") == ("ten", "center")
    assert parse_modes("all") == MODES
    with pytest.raises(UsageError, match="resize, center"):
        parse_modes("ten,twelve")


def test_confusion_matrix_matches_a_direct_count():
    rng = np.random.default_rng(3)
    labels, pred = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    cm = confusion_matrix(labels, pred, 5)
    direct = np.zeros((5, 5), dtype=np.int64)
    for t, p in zip(labels, pred, strict=True):
        direct[t, p] += 1
    assert (cm == direct).all() and cm.sum() == 200
    assert np.allclose(row_normalized(cm).sum(1), 1.0)
    assert row_normalized(np.zeros((2, 2), dtype=np.int64)).sum() == 0  # unseen classes: 0


def test_tags_from_json_and_csv(tmp_path):
    assert sample_tags({"tags": ["mono", "poly", "mono"]}) == ("mono", "poly")
    assert sample_tags({"tag": "mono"}) == ("mono",)
    assert sample_tags({"tags": "a, b"}) == ("a", "b")
    assert sample_tags({}) == ()
    f = tmp_path / "tags.csv"
    f.write_text("key,tag\nk1,night\nk1,rain\nk2,day\n")
    assert read_tags(f) == {"k1": ("night", "rain"), "k2": ("day",)}
    f.write_text("k1\n")
    with pytest.raises(UsageError, match="no tag column"):
        read_tags(f)


def test_label_map():
    assert label_map([], CLASSES) is None and label_map(CLASSES, CLASSES) is None
    assert label_map(["blue", "red", "green"], CLASSES) == [2, 0, 1]
    with pytest.raises(UsageError, match="not trained on"):
        label_map(["red", "cyan"], CLASSES)


def tagged_val(out: Path, fmt: str = "webdataset") -> Path:
    items = []
    for i, s in enumerate(samples("val", 4)):
        meta = dict(s.meta, tags=["even" if i % 2 == 0 else "odd"])
        items.append(Sample(s.key, s.image, s.ext, s.cls, meta))
    write_split(out, "val", items, max_count=5, fmt=fmt)
    return out


def random_model() -> LoadedModel:
    from dataprep.train.models import TinyCNN

    torch.manual_seed(1)
    return LoadedModel(TinyCNN(3, width=4), list(CLASSES), ViewSpec(32, 36), MEAN, STD,
                       {"model": "tiny_cnn"})


@pytest.mark.parametrize("fmt", ["webdataset", "lmdb"])
def test_report_of_a_model_that_errs(tmp_path, fmt):
    data = tagged_val(tmp_path / "val", fmt)
    tags = tmp_path / "tags.csv"
    tags.write_text("key,tag\nval_red_0000,first\nval_blue_0003,last\n")
    result = evaluate_model(random_model(), str(data), modes=("center", "ten", "mix"),
                            device="cpu", batch_size=5, tags=tags)
    assert result.num_samples == 12 and result.info["split"] == "val"
    assert sorted(result.keys) == sorted(s.key for s in samples("val", 4))
    primary = result.modes[result.primary]
    assert result.primary == max(result.modes, key=lambda m: (
        result.modes[m].top1(result.labels), -result.modes[m].views))
    wrong = int((primary.pred != result.labels).sum())
    per_class_hits = [np.mean(primary.pred[result.labels == c] == c) for c in range(3)]
    assert primary.class_mean_top1(result.labels) == pytest.approx(np.mean(per_class_hits))
    assert wrong > 0  # an untrained network: the sheet has something to show
    from dataprep.train.eval_report import sheet_keys
    from dataprep.train.evaluate import load_thumbnails

    thumbs = load_thumbnails(str(data), "val", sheet_keys(result, 3))
    assert thumbs and set(thumbs) == sheet_keys(result, 3)
    files = write_report(result, tmp_path / "report", thumbs, per_class_sheet=3)
    out = tmp_path / "report"
    for name in files:
        assert (out / name).stat().st_size > 0, name
    assert "per_tag.csv" in files
    with open(out / "confusion.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["true \\ predicted", *CLASSES] and [r[0] for r in rows[1:]] == CLASSES
    cm = np.array([[int(v) for v in r[1:]] for r in rows[1:]])
    assert cm.sum() == 12 and (cm == confusion_matrix(result.labels, primary.pred, 3)).all()
    assert cm.trace() == 12 - wrong
    with open(out / "misclassified.csv") as f:
        mis = list(csv.DictReader(f))
    assert len(mis) == wrong
    assert all(r["true"] != r["predicted"] and r["path"].endswith(".png") for r in mis)
    with open(out / "per_class.csv") as f:
        per_class = list(csv.DictReader(f))
    assert [int(r["support"]) for r in per_class] == [4, 4, 4]
    with open(out / "per_tag.csv") as f:
        per_tag = {r["tag"]: r for r in csv.DictReader(f)}
    assert {t: int(r["samples"]) for t, r in per_tag.items()} == {
        "even": 6, "odd": 6, "first": 1, "last": 1}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["misclassified"] == wrong and metrics["primary"] == result.primary
    assert set(metrics["modes"]) == {"center", "ten", "mix"}
    md = (out / "report.md").read_text()
    assert "![confusion matrix](confusion.png)" in md and "misclassified.png" in md
    assert "Accuracy per tag" in md
    for png in ("confusion.png", "misclassified.png"):
        assert Image.open(out / png).size[0] > 200


def test_materialized_views_are_refused(tmp_path):
    items = [Sample(f"k_v{i}", class_image(0, 0), "png", 0,
                    {"key": f"k_v{i}", "source": "k", "view": i}) for i in range(2)]
    write_split(tmp_path / "views", "val", items, max_count=5)
    with pytest.raises(UsageError, match="materialized view"):
        evaluate_model(random_model(), str(tmp_path / "views"), modes=("center",),
                       device="cpu")


def test_primary_must_be_evaluated(tmp_path):
    with pytest.raises(UsageError, match="--primary ten"):
        evaluate_model(random_model(), str(tmp_path), modes=("center",), primary="ten")


def test_evaluate_command_on_a_checkpoint_of_dataprep_train(tmp_path):
    shards = make_shards(tmp_path / "shards", train_per_class=8)
    run = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(cli, ["train", str(shards), "-o", str(run), "--model", "tiny_cnn",
                                 "--img-size", "32", "--short-side", "36", "--epochs", "2",
                                 "--batch-size", "8", "--workers", "0", "--lr", "0.05",
                                 "--no-progress", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    val = tagged_val(tmp_path / "val")
    tags = tmp_path / "tags.csv"
    tags.write_text("val_green_0001,picked\n")
    out = tmp_path / "eval"
    result = runner.invoke(cli, ["evaluate", str(run / "best.pt"), str(val), "-o", str(out),
                                 "--device", "cpu", "--batch-size", "5", "--no-progress",
                                 "--tags", str(tags)])
    assert result.exit_code == 0, result.output
    for mode in MODES:
        assert f"\n{mode} " in result.output
    expected = {"report.md", "metrics.json", "confusion.csv", "confusion_normalized.csv",
                "confusion.png", "per_class.csv", "misclassified.csv", "misclassified.png",
                "per_tag.csv"}
    assert {p.name for p in out.iterdir()} == expected
    assert all((out / name).stat().st_size > 0 for name in expected)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_samples"] == 12 and metrics["model"] == "tiny_cnn"
    assert metrics["device"] == "cpu" and metrics["classes"] == CLASSES
    assert sum(map(sum, metrics["confusion"])) == 12
    assert {r["tag"] for r in metrics["per_tag"]} == {"even", "odd", "picked"}
    # the center mode is exactly the trainer's validation (same crops, same pixels) when the
    # validation set is the same: evaluate the training run's own val split
    ckpt = torch.load(run / "best.pt", weights_only=True)
    same = runner.invoke(cli, ["evaluate", str(run / "best.pt"), str(shards), "-o",
                               str(tmp_path / "eval2"), "--tta", "center", "--device", "cpu",
                               "--no-progress"])
    assert same.exit_code == 0, same.output
    m2 = json.loads((tmp_path / "eval2" / "metrics.json").read_text())
    assert m2["split"] == "val"
    assert m2["modes"]["center"]["top1"] == pytest.approx(ckpt["best_top1"], abs=1e-9)
    bad = runner.invoke(cli, ["evaluate", str(run / "best.pt"), str(val), "-o", str(out),
                              "--tta", "center", "--primary", "ten"])
    assert bad.exit_code != 0 and "--primary" in bad.output


def test_load_model_rejects_other_files(tmp_path):
    f = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(1)}, f)
    with pytest.raises(UsageError, match="not a dataprep checkpoint"):
        load_model(f)
    g = tmp_path / "junk.pt"
    g.write_bytes(io.BytesIO(b"not a checkpoint").getvalue())
    with pytest.raises(UsageError):
        load_model(g)
