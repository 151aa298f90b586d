"""Models by name: torchvision's classification models, timm's when installed, and ``tiny_cnn``.

The classifier ("head") is found, not hard-coded per family: it is the last ``nn.Linear`` (or the
1x1 ``nn.Conv2d`` of SqueezeNet) in registration order, which is ``fc`` for ResNets,
``classifier[-1]`` for VGG / MobileNet / EfficientNet, ``heads.head`` for ViT.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dataprep.errors import UsageError


class TinyCNN(nn.Module):
    """Three strided conv blocks and a linear head: smoke tests and tiny images (digits)."""

    def __init__(self, num_classes: int = 1000, width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for mult in (1, 2, 4):
            layers += [nn.Conv2d(channels, width * mult, 3, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(width * mult), nn.ReLU(inplace=True)]
            channels = width * mult
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


LOCAL_MODELS = {"tiny_cnn": TinyCNN}


@dataclass
class BuiltModel:
    model: nn.Module
    head: str  # qualified name of the classifier module, e.g. "fc" or "classifier.1"
    source: str  # "torchvision" | "timm" | "dataprep"


def torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _timm():
    try:
        import timm
    except ImportError:
        return None
    return timm


def model_names() -> list[str]:
    names = sorted(LOCAL_MODELS) + torchvision_names()
    timm = _timm()
    return names + (sorted(timm.list_models()) if timm is not None else [])


def find_head(model: nn.Module) -> tuple[str, nn.Module]:
    """The classifier module: last ``nn.Linear``, or last 1x1 ``nn.Conv2d`` when there is none."""
    linear = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if linear:
        return linear[-1]
    conv = [(n, m) for n, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    if conv:
        return conv[-1]
    raise UsageError(f"cannot find a classifier layer in {type(model).__name__}")


def head_outputs(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


def replace_head(model: nn.Module, name: str, num_classes: int) -> None:
    """Put a freshly initialized classifier with ``num_classes`` outputs at ``name``."""
    old = model.get_submodule(name)
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    else:
        new = nn.Conv2d(old.in_channels, num_classes, 1, bias=old.bias is not None)
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new.to(next(old.parameters()).device))


def _construct(name: str, num_classes: int | None, pretrained: bool) -> tuple[nn.Module, str]:
    if name in LOCAL_MODELS:
        if pretrained:
            raise UsageError(f"--pretrained: {name} has no published weights")
        return LOCAL_MODELS[name](num_classes or 1000), "dataprep"
    import torchvision

    if name in torchvision_names():
        weights = "DEFAULT" if pretrained else None
        kwargs = {} if pretrained or num_classes is None else {"num_classes": num_classes}
        return torchvision.models.get_model(name, weights=weights, **kwargs), "torchvision"
    timm = _timm()
    if timm is not None and timm.is_model(name):
        kwargs = {} if pretrained or num_classes is None else {"num_classes": num_classes}
        return timm.create_model(name, pretrained=pretrained, **kwargs), "timm"
    close = difflib.get_close_matches(name, sorted(LOCAL_MODELS) + torchvision_names(), n=5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    timm_hint = "" if timm is not None else " (timm is not installed; it adds its own models)"
    raise UsageError(f"--model {name!r} is not a known model{hint}{timm_hint}; "
                     "`dataprep summary --model NAME` checks a name")


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict from ``path``, loaded with ``weights_only=True`` (never unpickles code).

    Accepts a bare state_dict, or a checkpoint holding one under ``model`` / ``state_dict``;
    a DDP ``module.`` prefix is removed.
    """
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UsageError(f"--weights {path} does not exist") from None
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, ...
        raise UsageError(f"--weights {path} cannot be loaded as a state_dict with "
                         f"weights_only=True: {exc}") from exc
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UsageError(f"--weights {path} holds no state_dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def build_model(name: str, num_classes: int, *, weights: str | Path | None = None,
                pretrained: bool = False) -> BuiltModel:
    """A model with a ``num_classes``-way head.

    ``weights``: a local state_dict; the model is built with the head size the file has, loaded
    strictly, then the head is replaced when its size differs from ``num_classes``.
    ``pretrained``: the framework's own download (torchvision ``weights="DEFAULT"``), then a
    new head. Raises :class:`UsageError` for unknown names and mismatched weights.
    """
    if weights is not None and pretrained:
        raise UsageError("pass either --weights FILE or --pretrained, not both")
    if weights is None:
        model, source = _construct(name, None if pretrained else num_classes, pretrained)
        head, module = find_head(model)
        if head_outputs(module) != num_classes:
            replace_head(model, head, num_classes)
        return BuiltModel(model, head, source)
    state = load_state_dict(weights)
    model, source = _construct(name, None, False)
    head, module = find_head(model)
    key = f"{head}.weight"
    if key not in state:
        raise UsageError(f"--weights {weights} has no {key}: it is not a {name} state_dict")
    if state[key].shape[0] != head_outputs(module):
        replace_head(model, head, state[key].shape[0])
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # tensor shapes differ
        raise UsageError(f"--weights {weights} does not fit --model {name}: {exc}") from exc
    if result.missing_keys or result.unexpected_keys:
        raise UsageError(
            f"--weights {weights} does not fit --model {name}: missing "
            f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    if state[key].shape[0] != num_classes:
        replace_head(model, head, num_classes)
    return BuiltModel(model, head, source)


def set_backbone_trainable(model: nn.Module, head: str, trainable: bool) -> None:
    """Freeze (or unfreeze) every parameter outside the head."""
    prefix = head + "."
    for name, p in model.named_parameters():
        p.requires_grad_(trainable or name.startswith(prefix))


def split_params(model: nn.Module, head: str) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(backbone parameters, head parameters)."""
    prefix = head + "."
    backbone, head_params = [], []
    for name, p in model.named_parameters():
        (head_params if name.startswith(prefix) else backbone).append(p)
    return backbone, head_params
