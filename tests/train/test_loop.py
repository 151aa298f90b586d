"""The training loop end to end on tiny real shards: learning, stages, checkpoints, resume,
warnings, and the ``train`` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import CLASSES, make_shards, read_metrics, write_split

from dataprep.records import Sample
from dataprep.train.cli import train as train_cmd
from dataprep.train.config import TrainConfig
from dataprep.train.loop import train
from dataprep.train.optim import lr_factor

REPO = Path(__file__).resolve().parents[2]
TINY = dict(model="tiny_cnn", img_size=32, short_side=36, batch_size=8, workers=0,
            progress=False, lr=0.05)


def cfg(data: Path, out: Path, **kw) -> TrainConfig:
    return TrainConfig(data=str(data), out=str(out), **{**TINY, **kw})


@pytest.mark.parametrize("schedule, warmup, step, expected", [
    ("cosine", 0, 0, 1.0), ("cosine", 0, 50, 0.5), ("cosine", 0, 100, 0.0),
    ("cosine", 1, 0, 0.1), ("cosine", 1, 9, 1.0), ("cosine", 1, 55, 0.5),
    ("step", 0, 29, 1.0), ("step", 0, 30, 0.1), ("step", 0, 61, 0.01),
    ("multistep", 0, 29, 1.0), ("multistep", 0, 30, 0.1), ("multistep", 0, 80, 0.01),
    ("constant", 2, 5, 0.3), ("constant", 2, 90, 1.0),
])
def test_lr_factor(schedule, warmup, step, expected):
    c = TrainConfig(data="", out="", epochs=10, schedule=schedule, warmup_epochs=warmup,
                    step_size=3, milestones=[3, 8], gamma=0.1)
    assert lr_factor(c, step, steps_per_epoch=10) == pytest.approx(expected)


def test_a_few_steps_lower_the_loss_and_write_the_run(shards, tmp_path):
    run = tmp_path / "run"
    result = train(cfg(shards, run, epochs=3))
    m = read_metrics(run)
    assert [h["epoch"] for h in m] == [1, 2, 3]
    assert m[-1]["train_loss"] < m[0]["train_loss"]
    assert m[-1]["val_loss"] < m[0]["val_loss"] < 1.1  # ln 3 = 1.0986 at chance
    assert result.best_top1 == max(h["val_top1"] for h in m) and result.best_top1 > 0.6
    for key in ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr",
                "images_per_s", "seconds"):
        assert key in m[0]
    assert m[0]["batches_per_rank"] == [48 // 8]
    assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.jsonl", "curves.png",
                                                 "best.pt", "last.pt"}
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((run / "config.json").read_text())
    assert config["classes"] == CLASSES and config["num_classes"] == 3
    assert config["resolved"]["batches_per_epoch"] == 6
    for name in ("best.pt", "last.pt"):
        ckpt = torch.load(run / name, weights_only=True)
        assert ckpt["config"]["model"] == "tiny_cnn" and ckpt["classes"] == CLASSES
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 3


def test_two_stage_fine_tune_of_a_torchvision_model_from_local_weights(shards, tmp_path):
    import torchvision

    weights = tmp_path / "r18.pth"
    torch.manual_seed(0)
    start = torchvision.models.resnet18().state_dict()
    torch.save(start, weights)
    run = tmp_path / "ft"
    kw = dict(model="resnet18", weights=str(weights), freeze_epochs=1, head_lr_mult=10,
              optimizer="adamw", lr=1e-3, schedule="constant", channels_last=True)
    train(cfg(shards, run, epochs=1, **kw))
    head_only = torch.load(run / "last.pt", weights_only=True)["model"]
    for k in ("layer1.0.conv1.weight", "bn1.running_mean", "layer4.1.bn2.running_var"):
        assert torch.equal(head_only[k], start[k]), k  # frozen: weights and BN statistics
    assert not torch.equal(head_only["fc.weight"][:3], start["fc.weight"][:3])
    train(cfg(shards, run, epochs=2, resume=True, **kw))  # extending a finished run
    m = read_metrics(run)
    assert [h["stage"] for h in m] == ["head", "all"]
    assert m[0]["lr"] == pytest.approx(1e-3)  # backbone group; the head learns at 1e-2
    final = torch.load(run / "last.pt", weights_only=True)["model"]
    assert not torch.equal(final["layer1.0.conv1.weight"], start["layer1.0.conv1.weight"])
    assert final["fc.weight"].shape == (3, 512)


def _kill_after_first_epoch(args: list[str], run: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")  # as the in-process runs: same float sums
    proc = subprocess.Popen([sys.executable, "-m", "dataprep.train", "train", *args],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (run / "last.pt").exists():
            proc.send_signal(signal.SIGKILL)  # a crash, not a clean stop
            break
        time.sleep(0.01)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode() if proc.stderr else ""


def test_resume_from_last_pt_equals_an_uninterrupted_run(shards, tmp_path):
    common = [str(shards), "--model", "tiny_cnn", "--img-size", "32", "--short-side", "36",
              "--batch-size", "8", "--workers", "1", "--epochs", "4", "--lr", "0.05",
              "--warmup-epochs", "1", "--no-progress", "--seed", "7"]
    whole = tmp_path / "whole"
    result = CliRunner().invoke(train_cmd, [*common, "-o", str(whole)])
    assert result.exit_code == 0, result.output
    broken = tmp_path / "broken"
    _kill_after_first_epoch([*common, "-o", str(broken)], broken)
    stopped_at = torch.load(broken / "last.pt", weights_only=True)["epoch"]
    assert 1 <= stopped_at < 4
    result = CliRunner().invoke(train_cmd, [*common, "-o", str(broken)])
    assert result.exit_code != 0 and "--resume" in result.output  # never silently mixed
    result = CliRunner().invoke(train_cmd, [*common, "-o", str(broken), "--resume"])
    assert result.exit_code == 0, result.output
    a = torch.load(whole / "last.pt", weights_only=True)
    b = torch.load(broken / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 4 and a["step"] == b["step"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [h["val_top1"] for h in a["history"]] == [h["val_top1"] for h in b["history"]]
    assert len(read_metrics(broken)) == 4


def test_nan_loss_warns_and_stops(shards, tmp_path, caplog):
    run = tmp_path / "nan"
    result = CliRunner().invoke(train_cmd, [str(shards), "-o", str(run), "--model", "tiny_cnn",
                                            "--img-size", "32", "--workers", "0", "--lr", "1e30",
                                            "-b", "8", "--epochs", "3", "--no-progress"])
    assert result.exit_code == 1
    assert "diverged" in result.output
    m = read_metrics(run)
    assert len(m) == 1 and m[0]["stopped"] == "diverged"


def _no_signal_shards(out: Path) -> Path:
    """Every class gets the same images: nothing to learn, accuracy stays at chance."""
    from conftest import class_image

    for split, n in (("train", 8), ("val", 4)):
        items = [Sample(f"{split}_{c}_{i}", class_image(0, i), "png", c,
                        {"key": f"{split}_{c}_{i}", "label": c})
                 for i in range(n) for c in range(3)]
        write_split(out, split, items, max_count=100)
    return out


def test_chance_accuracy_warns_and_early_stop_ends_the_run(tmp_path, caplog):
    data = _no_signal_shards(tmp_path / "flat")
    with caplog.at_level("WARNING", logger="dataprep.train"):
        result = train(cfg(data, tmp_path / "run", epochs=6, early_stop=2, lr=0.01))
    assert "learning rate too high?" in caplog.text
    assert result.stopped == "early_stop" and result.epochs_run < 6
    assert all(abs(h["val_top1"] - 1 / 3) < 1e-9 for h in result.history)


def test_accumulation_lmdb_and_lazy_views(tmp_path):
    lmdb = make_shards(tmp_path / "lmdb", train_per_class=8, val_per_class=2, fmt="lmdb")
    r = train(cfg(lmdb, tmp_path / "r1", epochs=1, accum_steps=2, optimizer="sgd"))
    assert r.history[0]["train_samples"] == 24 and r.history[0]["val_samples"] == 6
    lazy = make_shards(tmp_path / "lazy", train_per_class=2, val_per_class=1, size=40,
                       lazy_crop=36)
    r = train(cfg(lazy, tmp_path / "r2", epochs=1, batch_size=10))
    assert r.history[0]["train_samples"] == 60 and r.history[0]["val_samples"] == 30
    r = train(cfg(lazy, tmp_path / "r3", epochs=1, batch_size=2, lazy_views="one"))
    assert r.history[0]["train_samples"] == 6


def test_train_command_with_a_recipe(shards, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[train]\nmodel = "tiny_cnn"\nimg_size = 32\nepochs = 1\nworkers = 0\n'
                      'batch_size = 8\noptimizer = "adam"\nlr = 0.01\n')
    run = tmp_path / "run"
    result = CliRunner().invoke(train_cmd, [str(shards), "-o", str(run), "--recipe",
                                            str(recipe), "--epochs", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["optimizer"] == "adam" and config["epochs"] == 2  # the flag wins
    assert "best val top-1" in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nlearning_rate = 1\n")
    result = CliRunner().invoke(train_cmd, [str(shards), "-o", str(tmp_path / "x"),
                                            "--recipe", str(bad)])
    assert result.exit_code != 0 and "learning_rate" in result.output


def test_bad_flags_are_reported_in_their_own_words(shards, tmp_path):
    result = CliRunner().invoke(train_cmd, [str(shards), "-o", str(tmp_path / "x"),
                                            "--short-side", "20", "--img-size", "32"])
    assert result.exit_code != 0 and "--short-side 20 is smaller than --img-size 32" \
        in result.output
    result = CliRunner().invoke(train_cmd, [str(shards), "-o", str(tmp_path / "y"),
                                            "--batch-size", "512", "--model", "tiny_cnn"])
    assert result.exit_code != 0 and "--batch-size" in result.output
    assert not os.path.exists(tmp_path / "y" / "metrics.jsonl")


def test_shards_sorted_by_class_are_reported(tmp_path, caplog):
    from conftest import samples

    ordered = sorted(samples("train", 70), key=lambda s: s.cls)  # 70 reds, then greens, ...
    write_split(tmp_path / "sorted", "train", ordered, max_count=100)
    with caplog.at_level("WARNING", logger="dataprep.train"):
        train(cfg(tmp_path / "sorted", tmp_path / "run", epochs=1, steps_per_epoch=1,
                  shuffle_buffer=16))
    assert "sorted by class" in caplog.text and "dataprep shard --shuffle" in caplog.text


def test_freeze_bn_keeps_the_statistics_while_weights_learn(shards, tmp_path):
    run = tmp_path / "run"
    train(cfg(shards, run, epochs=1, freeze_bn=True))
    state = torch.load(run / "last.pt", weights_only=True)["model"]
    assert torch.equal(state["features.1.running_mean"], torch.zeros(16))  # as initialized
    assert torch.equal(state["features.1.running_var"], torch.ones(16))
    assert not torch.equal(state["features.1.weight"], torch.ones(16))  # affine part learns
