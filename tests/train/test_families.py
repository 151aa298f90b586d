"""Every torchvision classification family trains: one tiny step each (batch of 2, random init,
no download), auxiliary outputs as torchvision's reference recipe weighs them.

A family is the torchvision module a builder lives in (``torchvision.models.resnet`` holds
resnet*, resnext* and wide_resnet*). Each has a representative below, run at the smallest input
it accepts; where a module holds two architectures (EfficientNet v1/v2, Swin v1/v2, RegNet X/Y,
VGG with and without BatchNorm, ResNet basic/bottleneck blocks) both are run. A new family in a
later torchvision fails :func:`test_every_family_has_a_representative`.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from conftest import make_shards
from torch import nn

from dataprep.train.config import TrainConfig
from dataprep.train.loop import train
from dataprep.train.models import build_model, model_loss

# representative -> smallest input side (pixels) that one training step accepts
REPRESENTATIVES = {
    "alexnet": 64, "convnext_tiny": 32, "densenet121": 32, "efficientnet_b0": 32,
    "efficientnet_v2_s": 32, "googlenet": 32, "inception_v3": 299, "maxvit_t": 224,
    "mnasnet0_5": 32, "mobilenet_v2": 32, "mobilenet_v3_small": 32, "regnet_x_400mf": 32,
    "regnet_y_400mf": 32, "resnet18": 32, "resnext50_32x4d": 32, "wide_resnet50_2": 32,
    "shufflenet_v2_x0_5": 32, "squeezenet1_0": 32, "swin_t": 32, "swin_v2_t": 32,
    "vgg11": 32, "vgg11_bn": 32, "vit_b_16": 16,
}
# families whose one CPU step takes over ~20 s: none in torchvision 0.29 (the slowest, maxvit_t
# at 224 px, takes about 2 s)
SKIPPED: dict[str, str] = {}


def family(name: str) -> str:
    return torchvision.models.get_model_builder(name).__module__


def test_every_family_has_a_representative():
    covered = {family(n) for n in REPRESENTATIVES}
    names = torchvision.models.list_models(module=torchvision.models)
    missing = [n for n in names if family(n) not in covered and n not in SKIPPED]
    assert not missing, f"families without a representative: {missing}"
    assert set(REPRESENTATIVES) <= set(names)


@pytest.mark.parametrize("name, size", sorted(REPRESENTATIVES.items()))
def test_one_training_step(name, size):
    torch.manual_seed(0)
    built = build_model(name, 3, img_size=size)
    model = built.model.train()
    x, y = torch.randn(2, 3, size, size), torch.tensor([0, 2])
    head = model.get_submodule(built.head).weight
    before = head.detach().clone()
    loss, logits = model_loss(model(x), y, nn.CrossEntropyLoss(), built.aux_weight)
    assert logits.shape == (2, 3) and torch.isfinite(loss)
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert not torch.equal(head, before)
    with torch.no_grad():
        out = model.eval()(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3)  # eval: the main output


@pytest.mark.parametrize("name, weight, outputs", [("googlenet", 0.3, 3),
                                                   ("inception_v3", 0.4, 2)])
def test_auxiliary_losses_are_weighted_as_torchvision_s_recipe(name, weight, outputs):
    torch.manual_seed(0)
    built = build_model(name, 4, img_size=REPRESENTATIVES[name])
    assert built.aux_weight == weight
    size = REPRESENTATIVES[name]
    out = built.model.train()(torch.randn(2, 3, size, size))
    assert len(out) == outputs and all(o.shape == (2, 4) for o in out)  # aux heads resized
    y = torch.tensor([1, 3])
    ce = nn.functional.cross_entropy
    expected = ce(out[0], y) + weight * sum(ce(a, y) for a in out[1:])
    loss, main = model_loss(out, y, nn.CrossEntropyLoss(), built.aux_weight)
    assert torch.allclose(loss, expected) and main is out[0]


def test_inception_defaults_to_299_px():
    assert TrainConfig(data="", out="", model="inception_v3").img_size == 299
    assert TrainConfig(data="", out="", model="inception_v3", img_size=320).img_size == 320
    assert TrainConfig(data="", out="", model="resnet18").img_size == 224


def test_the_trainer_runs_googlenet(tmp_path):
    """The crash of the issue: 'GoogLeNetOutputs' object has no attribute 'float'."""
    data = make_shards(tmp_path / "shards", train_per_class=4, val_per_class=1)
    result = train(TrainConfig(data=str(data), out=str(tmp_path / "run"), model="googlenet",
                               img_size=32, short_side=36, batch_size=4, workers=0,
                               progress=False, epochs=1, steps_per_epoch=2))
    m = result.history[0]
    assert m["train_samples"] == 8 and m["val_samples"] == 3
    assert torch.isfinite(torch.tensor(m["train_loss"]))
