"""``dataprep predict``: probabilities equal ``evaluate``'s for the same image bytes and mode
(computed through ``evaluate_model`` on shards holding those bytes), labelled and unlabelled
folders, list files, unreadable images, the CSV and the contact sheet."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import CLASSES, class_image, make_shards, write_split
from PIL import Image

from dataprep.cli import cli
from dataprep.errors import UsageError
from dataprep.records import Sample
from dataprep.train.evaluate import evaluate_model, load_model
from dataprep.train.predict import predict, read_inputs

TRAIN = ["--model", "tiny_cnn", "--img-size", "32", "--short-side", "36", "--epochs", "2",
         "--batch-size", "8", "--workers", "0", "--lr", "0.05", "--no-progress",
         "--device", "cpu"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("predict_run")
    shards = make_shards(root / "shards", train_per_class=8)
    result = CliRunner().invoke(cli, ["train", str(shards), "-o", str(root / "run"), *TRAIN])
    assert result.exit_code == 0, result.output
    return root / "run" / "best.pt"


def rgba_png(label: int) -> bytes:
    """A class image with a transparent stripe: decoding composites it on white."""
    img = Image.open(io.BytesIO(class_image(label, 77, size=30))).convert("RGBA")
    arr = np.asarray(img).copy()
    arr[:, :8, 3] = 0
    buf = io.BytesIO()
    Image.fromarray(arr, "RGBA").save(buf, "PNG")
    return buf.getvalue()


def photo_folder(root: Path, per_class: int = 3) -> dict[str, bytes]:
    """root/<class>/<i>.png plus one RGBA PNG per class; returns key -> bytes."""
    written = {}
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            data = class_image(label, 900 + i, size=36 + 3 * i)  # odd sizes: crops differ
            (root / name / f"{i}.png").write_bytes(data)
            written[f"{name}__{i}"] = data
        data = rgba_png(label)
        (root / name / "alpha.png").write_bytes(data)
        written[f"{name}__alpha"] = data
    return written


def shards_of(out: Path, written: dict[str, bytes]) -> Path:
    """The same bytes as val shards, written with the project's tar writer (no re-encoding)."""
    items = [Sample(key, data, "png", CLASSES.index(key.split("__")[0]),
                    {"key": key, "label": CLASSES.index(key.split("__")[0])})
             for key, data in written.items()]
    write_split(out, "val", items, max_count=5)
    return out


@pytest.mark.parametrize("mode", ["center", "ten", "mix", "resize"])
def test_probabilities_equal_evaluates(checkpoint, tmp_path, mode):
    written = photo_folder(tmp_path / "photos")
    got = predict(checkpoint, tmp_path / "photos", tmp_path / "out", mode=mode, top_k=3,
                  device="cpu", batch_size=4)
    ref = evaluate_model(load_model(checkpoint), str(shards_of(tmp_path / "shards", written)),
                         modes=(mode,), device="cpu", batch_size=5)
    assert sorted(got.keys) == sorted(ref.keys) == sorted(written)
    order = [got.keys.index(k) for k in ref.keys]
    r = ref.modes[mode]
    np.testing.assert_array_equal(got.top_idx[order, 0], r.pred)
    np.testing.assert_allclose(got.top_prob[order, 0], r.conf, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got.true_prob[order], r.true_prob, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(got.labels[order], ref.labels)
    np.testing.assert_array_equal(got.top5_hit[order], r.top5_hit)
    # the accuracy printed is evaluate's table, to the digit
    mine = got.evaluation()
    assert mine.table()[0]["top1"] == ref.table()[0]["top1"]
    assert mine.table()[0]["class_mean_top1"] == ref.table()[0]["class_mean_top1"]
    assert mine.lines()[0] == ref.lines()[0]
    assert mine.lines()[1].split()[:5] == ref.lines()[1].split()[:5]  # all but images/s


def test_unlabelled_folder_and_the_csv(checkpoint, tmp_path):
    written = photo_folder(tmp_path / "photos")
    labelled = predict(checkpoint, tmp_path / "photos", tmp_path / "a", top_k=2, device="cpu")
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in (tmp_path / "photos").glob("*/*.png"):
        shutil.copy(p, flat / f"{p.parent.name}_{p.name}")
    (flat / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (flat / "notes.txt").write_text("ignored: not an image name")
    got = predict(checkpoint, flat, tmp_path / "b", top_k=2, device="cpu", sheet_count=5)
    assert got.num_images == len(written) and not got.labelled.any()
    assert got.evaluation() is None
    assert [e["path"] for e in got.skipped] == [str(flat / "broken.jpg")]
    with open(tmp_path / "b" / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "key", "true", "class_1", "prob_1", "class_2", "prob_2"]
    assert len(rows) == len(written) and all(r["true"] == "" for r in rows)
    for r in rows:
        assert r["class_1"] in CLASSES and r["class_2"] in CLASSES
        assert r["class_1"] != r["class_2"]
        assert 1.0 >= float(r["prob_1"]) >= float(r["prob_2"]) >= 0.0
    # the same pixels give the same probabilities, labelled or not
    by_name = {Path(p).parent.name + "_" + Path(p).name: i
               for i, p in enumerate(labelled.paths)}
    for i, p in enumerate(got.paths):
        j = by_name[Path(p).name]
        np.testing.assert_array_equal(got.top_idx[i], labelled.top_idx[j])
        np.testing.assert_allclose(got.top_prob[i], labelled.top_prob[j], rtol=1e-6)
    with open(tmp_path / "b" / "errors.csv", newline="") as f:
        errors = list(csv.DictReader(f))
    assert errors[0]["path"].endswith("broken.jpg") and errors[0]["reason"]
    assert got.sheet["shown"] == 5 and got.sheet["total"] == len(written)
    assert Image.open(tmp_path / "b" / "predictions.png").size[0] > 5 * 100


def test_path_lists_labelled_and_not(checkpoint, tmp_path):
    photo_folder(tmp_path / "photos")
    plain = tmp_path / "photos.txt"
    plain.write_text("# one path per line\nphotos/red/0.png\nphotos/blue/alpha.png\n")
    inputs = read_inputs(plain)
    assert [r.label for r in inputs.records] == [-1, -1] and not inputs.classes
    got = predict(checkpoint, plain, tmp_path / "p", device="cpu")
    assert got.num_images == 2 and not got.labelled.any()
    named = tmp_path / "named.txt"
    named.write_text("photos/red/0.png red\nphotos/blue/alpha.png blue\n")
    got = predict(checkpoint, named, tmp_path / "n", device="cpu")
    assert got.labels.tolist() == [CLASSES.index("red"), CLASSES.index("blue")]


def test_class_names_the_model_does_not_know(checkpoint, tmp_path):
    photo_folder(tmp_path / "photos")
    shutil.copytree(tmp_path / "photos" / "red", tmp_path / "photos" / "purple")
    with pytest.raises(UsageError, match="purple"):
        predict(checkpoint, tmp_path / "photos", tmp_path / "x", device="cpu")
    got = predict(checkpoint, tmp_path / "photos", tmp_path / "x", device="cpu",
                  use_labels=False)
    assert not got.labelled.any() and got.num_images == 16
    albums = tmp_path / "albums"
    shutil.copytree(tmp_path / "photos" / "red", albums / "2024")
    got = predict(checkpoint, albums, tmp_path / "y", device="cpu")
    assert not got.labelled.any() and "unlabelled" in got.note
    with pytest.raises(UsageError, match="write where it reads"):
        predict(checkpoint, albums, albums / "out", device="cpu")


def test_predict_command(checkpoint, tmp_path):
    photo_folder(tmp_path / "photos")
    out = tmp_path / "pred"
    result = CliRunner().invoke(cli, ["predict", str(checkpoint), str(tmp_path / "photos"),
                                      "-o", str(out), "--tta", "flip", "--top-k", "9",
                                      "--sheet-count", "4", "--device", "cpu",
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} >= {"predictions.csv", "predictions.png",
                                               "predict.json"}
    assert "mode     views   top-1" in result.output and "\nflip " in result.output
    assert "capped: 4 of 12" in result.output
    with open(out / "predictions.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header[-1] == "prob_3"  # --top-k is capped at the model's 3 classes
    bad = CliRunner().invoke(cli, ["predict", str(checkpoint), str(tmp_path / "photos"),
                                   "-o", str(out), "--tta", "center,ten"])
    assert bad.exit_code != 0 and "--tta" in bad.output


def test_shards_as_src_give_the_folders_predictions(checkpoint, tmp_path):
    written = photo_folder(tmp_path / "photos")
    folder = predict(checkpoint, tmp_path / "photos", tmp_path / "a", device="cpu")
    shards = predict(checkpoint, shards_of(tmp_path / "shards", written), tmp_path / "b",
                     split="val", device="cpu")
    assert sorted(shards.keys) == sorted(folder.keys)
    order = [folder.keys.index(k) for k in shards.keys]
    np.testing.assert_array_equal(shards.top_idx, folder.top_idx[order])
    np.testing.assert_allclose(shards.top_prob, folder.top_prob[order], rtol=1e-6)
    np.testing.assert_array_equal(shards.labels, folder.labels[order])


def solid_png(color: tuple[int, int, int], size: int = 40) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, "PNG")
    return buf.getvalue()


def test_newline_in_file_name_sheet_drawn(checkpoint: Path, tmp_path: Path) -> None:
    """A control character in a file name is shown as ``?`` on the sheet, not a crash."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a\nb.png").write_bytes(solid_png((200, 30, 30)))
    (src / "tab\there.png").write_bytes(solid_png((30, 200, 30)))
    out = tmp_path / "out"
    result = predict(checkpoint, src, out, device="cpu")
    assert result.num_images == 2
    assert result.sheet["shown"] == 2
    assert Image.open(out / "predictions.png").size[0] > 0
    assert (out / "predict.json").is_file()


def test_rerun_leaves_no_earlier_outputs(checkpoint: Path, tmp_path: Path) -> None:
    """A rerun into the same -o that writes no sheet and skips nothing removes the earlier
    run's predictions.png and errors.csv; predict.json is this run's."""
    import json

    src = tmp_path / "src"
    src.mkdir()
    (src / "0.png").write_bytes(solid_png((200, 30, 30)))
    (src / "1.png").write_bytes(solid_png((30, 30, 200)))
    (src / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    predict(checkpoint, src, out, device="cpu")
    assert (out / "predictions.png").is_file() and (out / "errors.csv").is_file()
    (src / "broken.png").unlink()
    runner = CliRunner()
    res = runner.invoke(cli, ["predict", str(checkpoint), str(src), "-o", str(out),
                              "--sheet-count", "0", "--device", "cpu", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert not (out / "predictions.png").exists()
    assert not (out / "errors.csv").exists()
    summary = json.loads((out / "predict.json").read_text())
    assert summary["sheet"] == {} and summary["skipped"] == 0 and summary["images"] == 2


def test_sheet_thumbnails_not_keyed_by_sample_key(checkpoint: Path, tmp_path: Path) -> None:
    """``a,b``, ``a_b`` and ``a b`` share one sample key; each keeps its own thumbnail."""
    from dataprep.records import make_key
    from dataprep.train.predict import predict_images

    src = tmp_path / "src"
    src.mkdir()
    colors = {"a,b.png": (220, 20, 20), "a_b.png": (20, 220, 20), "a b.png": (20, 20, 220)}
    for name, color in colors.items():
        (src / name).write_bytes(solid_png(color))
    assert len({make_key(n) for n in colors}) == 1  # the premise: one key for all three
    result, thumbs = predict_images(load_model(checkpoint), read_inputs(src), device="cpu")
    assert len(thumbs) == 3
    for i, path in enumerate(result.paths):
        mean = np.asarray(thumbs[i].convert("RGB")).reshape(-1, 3).mean(axis=0)
        assert np.allclose(mean, colors[Path(path).name], atol=2), (path, mean)
