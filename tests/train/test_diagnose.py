"""Warnings that diagnose, with the fix (constructed metric sequences, then real runs), label
order over a whole shard, snapshots every N epochs, validation every N steps."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import CLASSES, class_image, make_shards, samples, write_split

from dataprep.records import Sample
from dataprep.train import diagnose
from dataprep.train.config import TrainConfig
from dataprep.train.loop import train

TINY = dict(model="tiny_cnn", img_size=32, short_side=36, batch_size=8, workers=0,
            progress=False, lr=0.05)


def ev(loss: float, top1: float, chance: float = 1 / 3) -> dict:
    return {"val_loss": loss, "val_top1": top1, "chance": chance}


@pytest.mark.parametrize("evals, expected", [
    ([ev(1.10, 0.33), ev(1.2, 0.33), ev(1.4, 0.34), ev(1.9, 0.33)], True),
    ([ev(1.10, 0.33), ev(1.2, 0.33), ev(1.4, 0.34)], False),  # 2 rises only
    ([ev(1.10, 0.33), ev(1.2, 0.33), ev(1.1, 0.34), ev(1.9, 0.33)], False),  # a fall between
    ([ev(1.10, 0.33), ev(1.2, 0.50), ev(1.4, 0.60), ev(1.9, 0.70)], False),  # it learns
    ([ev(1.10, 0.33)] * 4, False),  # flat: not rising
    ([ev(0.9, 0.9), ev(0.8, 0.33), ev(0.9, 0.33), ev(1.0, 0.33), ev(1.1, 0.33)], True),
])
def test_loss_rising_at_chance(evals, expected):
    assert diagnose.loss_rising_at_chance(evals) is expected


def test_the_learning_rate_message_names_the_number():
    evals = [ev(1.10, 0.33), ev(1.2, 0.33), ev(1.4, 0.34), ev(1.9, 0.33)]
    message = diagnose.loss_rising_message(evals, lr=0.05)
    assert "learning rate too high? try --lr 0.005" in message
    assert "1.1000 -> 1.9000" in message


def epoch(train_top1: float, val_top1: float) -> dict:
    return {"train_top1": train_top1, "val_top1": val_top1}


@pytest.mark.parametrize("history, expected", [
    ([epoch(0.9, 0.6), epoch(0.95, 0.6), epoch(0.99, 0.61)], True),
    ([epoch(0.9, 0.6), epoch(0.95, 0.6)], False),  # 2 epochs only
    ([epoch(0.9, 0.6), epoch(0.7, 0.6), epoch(0.99, 0.61)], False),  # gap closed once
    ([epoch(0.5, 0.4), epoch(0.6, 0.5), epoch(0.7, 0.6)], False),  # a small gap: learning
    ([epoch(0.99, 0.5)] * 3 + [{"train_top1": 1.0}], True),  # epochs without val skipped
])
def test_overfitting(history, expected):
    assert diagnose.overfitting(history) is expected


def test_the_overfitting_message_says_what_to_do():
    message = diagnose.overfitting_message([epoch(0.99, 0.6)], 1e-4, best_epoch=2)
    assert message.startswith("overfitting:")
    for fix in ("more augmentation", "--weight-decay 0.0005", "fewer epochs", "epoch 2"):
        assert fix in message


def blocks(block: int, n: int) -> list[int]:
    """Labels 0,0,..,1,1,..,2,2,.. in runs of ``block``, repeated to ``n``."""
    return [(i // block) % 3 for i in range(n)]


def test_label_order_is_measured_over_the_whole_shard():
    ordered = blocks(20, 300)  # the first 64 hold every class: a peek would not notice
    assert len(set(ordered[:64])) == 3
    message = diagnose.sorted_shard_message(ordered, "s.tar", 100, 900, 3)
    assert message and "sorted by class" in message and "dataprep shard --shuffle" in message
    shuffled = list(torch.randperm(300, generator=torch.Generator().manual_seed(0)) % 3)
    assert diagnose.sorted_shard_message([int(v) for v in shuffled], "s", 100, 900, 3) is None
    assert diagnose.sorted_shard_message([0] * 50, "s", 100, 900, 3)  # one class per shard
    assert diagnose.sorted_shard_message(ordered, "s", 1000, 900, 3) is None  # buffer >= data
    assert diagnose.sorted_shard_message(ordered, "s", 100, 900, 1) is None  # one class
    rare = [0] * 40 + [1] + [0] * 40  # 2 changes, a shuffle gives ~2: too few to judge
    assert diagnose.sorted_shard_message(rare, "s", 10, 900, 2) is None
    same, expected = diagnose.label_order([0, 0, 1, 1])
    assert same == pytest.approx(2 / 3) and expected == pytest.approx(0.5)


def test_a_shard_sorted_in_blocks_is_reported_by_the_trainer(tmp_path, caplog):
    items = samples("train", 32)  # red, green, blue, red, ...: shuffled enough
    ordered = sorted(items, key=lambda s: (int(s.key.rsplit("_", 1)[1]) // 12, s.cls))
    assert len({s.cls for s in ordered[:64]}) == 3  # the old first-64 check passed these
    write_split(tmp_path / "blocks", "train", ordered, max_count=1000)
    with caplog.at_level("WARNING", logger="dataprep.train"):
        train(TrainConfig(data=str(tmp_path / "blocks"), out=str(tmp_path / "run"), epochs=1,
                          steps_per_epoch=1, shuffle_buffer=16, **TINY))
    assert "sorted by class" in caplog.text
    caplog.clear()
    write_split(tmp_path / "mixed", "train", items, max_count=1000)
    with caplog.at_level("WARNING", logger="dataprep.train"):
        train(TrainConfig(data=str(tmp_path / "mixed"), out=str(tmp_path / "run2"), epochs=1,
                          steps_per_epoch=1, shuffle_buffer=16, **TINY))
    assert "sorted by class" not in caplog.text


def test_overfitting_is_reported_by_the_trainer(tmp_path, caplog):
    """Learnable training images, a validation set of one image kind under all three labels:
    train top-1 climbs, val top-1 stays at 1/3."""
    data = tmp_path / "shards"
    write_split(data, "train", samples("train", 8), max_count=100)
    val = [Sample(f"v_{c}_{i}", class_image(0, 900 + i), "png", c, {"key": f"v_{c}_{i}",
                                                                     "label": c})
           for i in range(2) for c in range(len(CLASSES))]
    write_split(data, "val", val, max_count=100)
    with caplog.at_level("WARNING", logger="dataprep.train"):
        result = train(TrainConfig(data=str(data), out=str(tmp_path / "run"), epochs=6,
                                   **dict(TINY, batch_size=4)))
    gaps = [h["train_top1"] - h["val_top1"] for h in result.history]
    assert sum(g > diagnose.OVERFIT_MARGIN for g in gaps[-3:]) == 3, gaps
    assert caplog.text.count("overfitting:") == 1  # once, not every epoch


def test_save_every_and_eval_every_steps(tmp_path):
    data = make_shards(tmp_path / "shards")  # 48 training images: 6 steps of 8 per epoch
    run = tmp_path / "run"
    result = train(TrainConfig(data=str(data), out=str(run), epochs=4, save_every=2,
                               eval_every_steps=4, **TINY))
    assert sorted(p.name for p in run.glob("epoch-*.pt")) == ["epoch-2.pt", "epoch-4.pt"]
    assert torch.load(run / "epoch-2.pt", weights_only=True)["epoch"] == 2
    evals = [json.loads(line) for line in (run / "evals.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [4, 8, 12, 16, 20, 24]
    assert [e["epoch"] for e in evals] == [1, 2, 2, 3, 4, 4]
    every = [(e["val_top1"], -e["step"]) for e in evals] + \
        [(h["val_top1"], -6 * h["epoch"]) for h in result.history]
    best_top1, best_step = max(every, key=lambda t: (t[0], t[1]))
    assert result.best_top1 == best_top1
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["best_top1"] == best_top1 and best["best_step"] == result.best_step
    assert result.best_step == -best_step  # the first evaluation to reach the best top-1
