"""Layer-wise fine-tuning: which parameters change after a step, the optimizer's groups and
learning rates, re-initialised layers, the group table, and ``summary`` under the same flags."""

from __future__ import annotations

import pytest
import torch
import torchvision
from click.testing import CliRunner
from conftest import make_shards

from dataprep.errors import UsageError
from dataprep.train.cli import summary
from dataprep.train.config import TrainConfig
from dataprep.train.finetune import matches, parse_lr_group, plan
from dataprep.train.loop import train
from dataprep.train.models import build_model, layers
from dataprep.train.optim import build_optimizer, fine_tune_plan

VGG_RECIPE = ["classifier.6=10", "classifier.[03]=1", "*=0"]


def test_patterns_match_parameters_and_the_modules_holding_them():
    assert matches("classifier.6", "classifier.6.weight")
    assert matches("classifier.[03]", "classifier.3.bias")
    assert matches("features", "features.0.weight") and matches("*", "fc.bias")
    assert not matches("classifier.6", "classifier.60.weight")
    assert not matches("layer4", "layer40.weight")
    assert parse_lr_group("a.b=c=2.5").pattern == "a.b=c"  # the last '=' splits
    for bad in ("classifier", "=2", "x=-1", "x=fast", "x=inf"):
        with pytest.raises(UsageError, match="PATTERN=MULT"):
            parse_lr_group(bad)


def test_vgg_layers_are_its_convolutions_then_three_fully_connected():
    names = layers(torchvision.models.vgg11(num_classes=3))
    assert names[-3:] == ["classifier.0", "classifier.3", "classifier.6"]
    assert names[:2] == ["features.0", "features.3"] and len(names) == 11


def test_first_match_wins_and_the_table_counts_layers_parameters_lr():
    model = torchvision.models.vgg11(num_classes=3)
    p = plan(model, "classifier.6", rules=[parse_lr_group(t) for t in VGG_RECIPE])
    assert p.of_param["classifier.6.weight"].name == "classifier.6=10"
    assert p.of_param["classifier.3.bias"].name == "classifier.[03]=1"
    assert p.of_param["features.0.weight"].frozen
    numel = {n: q.numel() for n, q in model.named_parameters()}
    lines = p.table(0.001).splitlines()
    assert lines[0].split() == ["group", "layers", "parameters", "lr"]
    assert lines[1].split() == ["classifier.6=10", "1", f"{4096 * 3 + 3:,}", "0.01"]
    fc = sum(v for k, v in numel.items() if k.startswith(("classifier.0", "classifier.3")))
    assert lines[2].split() == ["classifier.[03]=1", "2", f"{fc:,}", "0.001"]
    conv = sum(v for k, v in numel.items() if k.startswith("features"))
    assert lines[3].split() == ["*=0", "8", f"{conv:,}", "0"]
    assert len(lines) == 4  # no empty backbone / head groups


def test_a_pattern_that_matches_nothing_is_refused():
    model = torchvision.models.resnet18(num_classes=3)
    with pytest.raises(UsageError, match="'clasifier=10' matches no parameter"):
        plan(model, "fc", rules=[parse_lr_group("clasifier=10")])


@pytest.mark.parametrize("kw, trainable", [
    (dict(train_last=2), {"features.7", "classifier"}),
    (dict(freeze_until="features.6"), {"features.6", "features.7", "classifier"}),
    (dict(freeze_until="features"), {"features.0", "features.1", "features.3", "features.4",
                                     "features.6", "features.7", "classifier"}),
])
def test_train_last_and_freeze_until(kw, trainable):
    built = build_model("tiny_cnn", 3)
    p = plan(built.model, built.head, **kw)
    assert {n.rpartition(".")[0] for n in p.trainable()} == trainable


def test_boundaries_are_checked():
    built = build_model("tiny_cnn", 3)
    with pytest.raises(UsageError, match="did you mean features.6"):
        plan(built.model, built.head, freeze_until="feature.6")
    with pytest.raises(UsageError, match="7 layers"):
        plan(built.model, built.head, train_last=8)
    with pytest.raises(UsageError, match="pass one"):
        plan(built.model, built.head, train_last=1, freeze_until="classifier")
    with pytest.raises(UsageError, match="7 layers"):
        build_model("tiny_cnn", 3, reinit_last=8)


def test_optimizer_groups_and_learning_rates():
    cfg = TrainConfig(data="", out="", model="vgg11", lr=0.002, lr_group=VGG_RECIPE)
    built = build_model("vgg11", 3)
    opt = build_optimizer(cfg, built)
    assert [(g["name"], g["lr_mult"]) for g in opt.param_groups] == [
        ("classifier.6=10", 10.0), ("classifier.[03]=1", 1.0)]
    params = dict(built.model.named_parameters())
    assert opt.param_groups[0]["params"] == [params["classifier.6.weight"],
                                             params["classifier.6.bias"]]
    assert not any(p.requires_grad is False for g in opt.param_groups for p in g["params"])
    plain = build_optimizer(TrainConfig(data="", out="", head_lr_mult=4), build_model(
        "resnet18", 3))
    assert [(g["name"], g["lr_mult"]) for g in plain.param_groups] == [("backbone", 1.0),
                                                                       ("head", 4.0)]
    with pytest.raises(UsageError, match="nothing would train"):
        build_optimizer(TrainConfig(data="", out="", lr_group=["*=0"]), built)


def test_the_practitioners_recipe_on_vgg11_changes_exactly_what_it_should(tmp_path, caplog):
    """Load all but the last layer from --weights, re-initialise it, fc1/fc2 at the base lr,
    fc3 ten times faster, the convolutions frozen; one step of the real trainer."""
    torch.manual_seed(3)
    start = torchvision.models.vgg11().state_dict()  # 1000 classes, as ImageNet weights
    weights = tmp_path / "vgg11.pth"
    torch.save(start, weights)
    data = make_shards(tmp_path / "shards", train_per_class=2, val_per_class=1)
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), model="vgg11",
                      weights=str(weights), reinit_last=1, lr_group=VGG_RECIPE, lr=0.01,
                      img_size=32, short_side=36, batch_size=6, workers=0, progress=False,
                      epochs=1, schedule="constant", weight_decay=0.0)
    with caplog.at_level("INFO", logger="dataprep.train"):
        train(cfg)
    assert "classifier.6=10" in caplog.text and "re-initialised classifier.6" in caplog.text
    after = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    for k, v in start.items():
        if k.startswith("features."):
            assert torch.equal(after[k], v), k  # frozen
        elif k.startswith(("classifier.0", "classifier.3")):
            assert not torch.equal(after[k], v), k  # loaded, then trained
    assert after["classifier.6.weight"].shape == (3, 4096)
    groups = {g["name"]: g for g in cfg.resolved["groups"]}
    assert groups["*=0"]["layers"] == 8 and groups["classifier.6=10"]["lr_mult"] == 10


def test_reinit_last_reinitialises_even_a_head_that_fits(tmp_path):
    torch.manual_seed(0)
    source = build_model("tiny_cnn", 3).model
    path = tmp_path / "w.pt"
    torch.save(source.state_dict(), path)
    kept = build_model("tiny_cnn", 3, weights=path)
    assert not kept.head_replaced
    assert torch.equal(kept.model.classifier.weight, source.classifier.weight)
    torch.manual_seed(1)
    fresh = build_model("tiny_cnn", 3, weights=path, reinit_last=3)
    assert fresh.reinit == ["features.6", "features.7", "classifier"]
    state = fresh.model.state_dict()
    assert not torch.equal(state["classifier.weight"], source.classifier.weight)
    assert not torch.equal(state["features.6.weight"], source.features[6].weight)
    assert torch.equal(state["features.7.running_var"], torch.ones(64))  # BN reset too
    assert torch.equal(state["features.3.weight"], source.features[3].weight)  # loaded
    replaced = build_model("tiny_cnn", 5, weights=path)
    assert replaced.head_replaced and replaced.model.classifier.out_features == 5


def test_frozen_layers_do_not_change_and_keep_their_bn_statistics(tmp_path):
    data = make_shards(tmp_path / "shards", train_per_class=4, val_per_class=1)
    torch.manual_seed(0)
    first = build_model("tiny_cnn", 3).model.state_dict()
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), model="tiny_cnn",
                      train_last=3, img_size=32, short_side=36, batch_size=4, workers=0,
                      progress=False, epochs=1, lr=0.05, seed=0)
    train(cfg)
    after = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    for k, v in first.items():
        if k.startswith(("features.0.", "features.1.", "features.3.", "features.4.")):
            assert torch.equal(after[k], v), k  # frozen: weights and BN statistics
        elif k.endswith((".weight", ".bias")):
            assert not torch.equal(after[k], v), k  # features.6, features.7, classifier
    assert torch.equal(after["features.4.running_mean"], first["features.4.running_mean"])
    assert not torch.equal(after["features.7.running_mean"], first["features.7.running_mean"])


def test_summary_shows_which_layers_train():
    result = CliRunner().invoke(summary, ["--model", "vgg11", "--img-size", "32",
                                          "--num-classes", "3", "--lr", "0.001",
                                          *[a for g in VGG_RECIPE for a in ("--lr-group", g)]])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.output.splitlines() if line}
    assert rows["classifier.6"][-1] == "x10" and rows["classifier.0"][-1] == "x1"
    assert rows["features.0"][-1] == "frozen"
    assert rows["classifier.6=10"][1:] == ["1", "12,291", "0.01"]
    built = build_model("vgg11", 3)
    trainable = sum(p.numel() for n, p in built.model.named_parameters()
                    if n.startswith("classifier"))
    assert f"trainable params:     {trainable:,}" in result.output


def test_fine_tune_plan_uses_the_config():
    cfg = TrainConfig(data="", out="", model="resnet18", freeze_until="layer4")
    p = fine_tune_plan(cfg, build_model("resnet18", 3))
    assert {n.split(".")[0] for n in p.trainable()} == {"layer4", "fc"}
