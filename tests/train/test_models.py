"""Models by name, local weights with a new head, freezing, and the summary table."""

from __future__ import annotations

import pickle

import pytest
import torch
import torchvision
from click.testing import CliRunner

from dataprep.errors import UsageError
from dataprep.train.cli import summary
from dataprep.train.models import (
    build_model,
    find_head,
    set_backbone_trainable,
    split_params,
)
from dataprep.train.summary import summarize


@pytest.mark.parametrize("name, head", [("resnet18", "fc"), ("mobilenet_v2", "classifier.1"),
                                        ("mobilenet_v3_small", "classifier.3"),
                                        ("squeezenet1_1", "classifier.1"),
                                        ("tiny_cnn", "classifier")])
def test_head_is_found_and_sized(name, head):
    built = build_model(name, 7)
    assert built.head == head
    out = built.model.eval()(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 7)


def test_local_weights_load_and_the_head_is_replaced(tmp_path):
    torch.manual_seed(1)
    source = torchvision.models.mobilenet_v2()  # an ImageNet-shaped state_dict, 1000 classes
    path = tmp_path / "mnv2.pth"
    torch.save(source.state_dict(), path)
    built = build_model("mobilenet_v2", 4, weights=path)
    state, ref = built.model.state_dict(), source.state_dict()
    backbone = [k for k in ref if not k.startswith("classifier.1.")]
    assert all(torch.equal(state[k], ref[k]) for k in backbone)
    assert state["classifier.1.weight"].shape == (4, 1280)


def test_weights_of_the_same_head_size_are_kept(tmp_path):
    first = build_model("tiny_cnn", 3)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": first.model.state_dict(), "epoch": 3}, path)  # a run's checkpoint
    again = build_model("tiny_cnn", 3, weights=path)
    assert torch.equal(again.model.classifier.weight, first.model.classifier.weight)


def test_weights_of_another_model_are_refused(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(UsageError, match="mobilenet_v2"):
        build_model("mobilenet_v2", 3, weights=path)


class Payload:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_weights_are_never_unpickled(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"fc.weight": Payload()}, f, protocol=2)
    with pytest.raises(UsageError, match="weights_only"):
        build_model("resnet18", 3, weights=path)


def test_unknown_name_suggests_close_ones():
    with pytest.raises(UsageError, match="resnet18"):
        build_model("resnet19", 3)


def test_freeze_trains_the_head_only():
    built = build_model("resnet18", 3)
    set_backbone_trainable(built.model, built.head, False)
    trainable = {n for n, p in built.model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}
    backbone, head = split_params(built.model, built.head)
    assert len(head) == 2 and len(backbone) == len(list(built.model.parameters())) - 2
    set_backbone_trainable(built.model, built.head, True)
    assert all(p.requires_grad for p in built.model.parameters())


@pytest.mark.parametrize("name, size", [("resnet18", 64), ("mobilenet_v2", 64),
                                        ("vit_b_16", 224), ("tiny_cnn", 32)])
def test_summary_totals_equal_the_model_count(name, size):
    model = build_model(name, 10).model
    s = summarize(model, (1, 3, size, size), name)
    assert s.total_params == sum(p.numel() for p in model.parameters())
    assert s.output_shape == "[1, 10]"
    idle = {r.name for r in s.rows if r.shape == "-"}  # rows the forward pass never called
    # MultiheadAttention uses its out_proj weights functionally, never calling the module
    assert all(n.endswith("self_attention.out_proj") for n in idle)
    if name == "vit_b_16":  # class token lives on the model itself, positions on the encoder
        assert any(r.name == "(model)" and r.params == 768 for r in s.rows)


def test_summary_command():
    result = CliRunner().invoke(summary, ["--model", "resnet18", "--img-size", "64",
                                          "--num-classes", "5"])
    assert result.exit_code == 0, result.output
    total = sum(p.numel() for p in torchvision.models.resnet18(num_classes=5).parameters())
    assert f"total params:         {total:,}" in result.output
    assert "layer1.0.conv1 (Conv2d)" in result.output and "[1, 64, 16, 16]" in result.output
    assert find_head(torchvision.models.resnet18())[0] == "fc"


def test_summary_command_reports_bad_names():
    result = CliRunner().invoke(summary, ["--model", "nonet"])
    assert result.exit_code != 0 and "not a known model" in result.output
