"""Models by name: torchvision's classification models, timm's when installed, and ``tiny_cnn``.

The classifier ("head") is found, not hard-coded per family: it is the last ``nn.Linear`` (or the
1x1 ``nn.Conv2d`` of SqueezeNet) in registration order, which is ``fc`` for ResNets,
``classifier[-1]`` for VGG / MobileNet / EfficientNet, ``heads.head`` for ViT.

Auxiliary classifiers (GoogLeNet's ``aux1``/``aux2``, Inception v3's ``AuxLogits``: modules of
class ``InceptionAux``) are resized with the head and trained as torchvision's reference recipe
does: ``loss = main + w * sum(aux)``, ``w`` 0.3 for GoogLeNet, 0.4 for Inception v3
(:func:`model_loss`); in eval mode the models return the main output only.

A *layer* (:func:`layers`) is a module that owns parameters itself, in registration order;
``--reinit-last N`` and ``--train-last N`` count them, auxiliary classifiers left out.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dataprep.errors import DataprepError, UsageError


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


# torchvision's reference weights of the auxiliary losses, by model class
AUX_WEIGHTS = {"GoogLeNet": 0.3, "Inception3": 0.4}


@dataclass
class BuiltModel:
    model: nn.Module
    head: str  # qualified name of the classifier module, e.g. "fc" or "classifier.1"
    source: str  # "torchvision" | "timm" | "dataprep"
    aux_weight: float = 0.0  # weight of each auxiliary loss (0: the model has none)
    reinit: list[str] = field(default_factory=list)  # layers re-initialised (--reinit-last)
    head_replaced: bool = False  # True when the loaded head had another class count


def aux_modules(model: nn.Module) -> list[str]:
    """Names of the auxiliary classifier modules (class ``InceptionAux``), registration order."""
    return [n for n, m in model.named_modules() if type(m).__name__ == "InceptionAux"]


def aux_heads(model: nn.Module) -> list[str]:
    """The last ``nn.Linear`` of each auxiliary classifier (its class scores)."""
    heads = []
    for name in aux_modules(model):
        linear = [n for n, m in model.get_submodule(name).named_modules()
                  if isinstance(m, nn.Linear)]
        heads.append(f"{name}.{linear[-1]}")
    return heads


def drop_aux(model: nn.Module) -> None:
    """Remove the auxiliary classifiers, as torchvision does for ``aux_logits=False``."""
    for name in aux_modules(model):
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, None)
    if hasattr(model, "aux_logits"):
        model.aux_logits = False


def all_layers(model: nn.Module) -> list[str]:
    """Every module that owns parameters itself (``recurse=False``), in registration order;
    ``""`` is the model (ViT's class token). Shared parameters belong to their first owner."""
    seen: set[int] = set()
    out = []
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in own)
        if own:
            out.append(name)
    return out


def layers(model: nn.Module) -> list[str]:
    """:func:`all_layers` without the auxiliary classifiers: what ``--reinit-last`` and
    ``--train-last`` count (VGG-11: ``features.0`` ... ``classifier.0, classifier.3,
    classifier.6``)."""
    aux = tuple(a + "." for a in aux_modules(model))
    return [n for n in all_layers(model) if not (n + ".").startswith(aux)]


def layer_keys(model: nn.Module, names: list[str]) -> set[str]:
    """state_dict keys (parameters and buffers) the modules ``names`` own themselves."""
    keys = set()
    for name in names:
        module = model.get_submodule(name)
        prefix = f"{name}." if name else ""
        keys.update(prefix + k for k, _ in module.named_parameters(recurse=False))
        keys.update(prefix + k for k, _ in module.named_buffers(recurse=False))
    return keys


def split_outputs(out: Any) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(main logits, auxiliary logits) of a forward pass: a tensor, or torchvision's
    ``GoogLeNetOutputs`` / ``InceptionOutputs`` (main first; ``None`` entries dropped)."""
    if isinstance(out, torch.Tensor):
        return out, []
    main, *aux = out
    return main, [a for a in aux if a is not None]


def model_loss(out: Any, labels: torch.Tensor, criterion: nn.Module, aux_weight: float
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, main logits)``: ``criterion(main) + aux_weight * sum(criterion(aux))``, in
    float32 (logits of an autocast forward are cast up first)."""
    main, aux = split_outputs(out)
    loss = criterion(main.float(), labels)
    for a in aux:
        loss = loss + aux_weight * criterion(a.float(), labels)
    return loss, main


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


def _torchvision_kwargs(name: str, num_classes: int | None, pretrained: bool,
                        img_size: int | None) -> dict[str, Any]:
    """Constructor arguments: the class count (random init), torchvision's own init for
    GoogLeNet / Inception (instead of its warning), the input size ViT and MaxViT fix."""
    kwargs: dict[str, Any] = {}
    if not pretrained:
        if num_classes is not None:
            kwargs["num_classes"] = num_classes
        if name in ("googlenet", "inception_v3"):
            kwargs["init_weights"] = True
    if img_size is not None and name.startswith("vit_"):
        kwargs["image_size"] = img_size
    if img_size is not None and name.startswith("maxvit_"):
        kwargs["input_size"] = (img_size, img_size)
    return kwargs


def _download_failed(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a failed weights download: no network, a refused
    or timed-out connection, an HTTP error, or Hugging Face Hub's "not cached, offline"."""
    import urllib.error

    while exc is not None:
        if isinstance(exc, (urllib.error.URLError, ConnectionError, TimeoutError)):
            return True
        if type(exc).__module__.startswith(("huggingface_hub", "requests", "urllib3")):
            return True
        if isinstance(exc, (OSError, RuntimeError)) and "download" in str(exc).lower():
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _no_download(name: str, exc: BaseException) -> DataprepError:
    reason = " ".join(str(getattr(exc, "reason", None) or exc).split())[:200]
    return DataprepError(f"--pretrained: could not download the {name} weights ({reason}); "
                         "without network, pass a local state_dict with --weights FILE "
                         "(`make weights` fetches mobilenet_v2-b0353104.pth into models/)")


def _construct(name: str, num_classes: int | None, pretrained: bool,
               img_size: int | None = None) -> tuple[nn.Module, str]:
    if name in LOCAL_MODELS:
        if pretrained:
            raise UsageError(f"--pretrained: {name} has no published weights")
        return LOCAL_MODELS[name](num_classes or 1000), "dataprep"
    import torchvision

    if name in torchvision_names():
        weights = "DEFAULT" if pretrained else None
        kwargs = _torchvision_kwargs(name, num_classes, pretrained, img_size)
        try:
            return torchvision.models.get_model(name, weights=weights, **kwargs), "torchvision"
        except ValueError as exc:  # e.g. ViT weights made for another image size
            raise UsageError(f"--model {name} at --img-size {img_size}: {exc}") from exc
        except (OSError, RuntimeError) as exc:
            if pretrained and _download_failed(exc):
                raise _no_download(name, exc) from None
            raise
    timm = _timm()
    if timm is not None and timm.is_model(name):
        kwargs = {} if pretrained or num_classes is None else {"num_classes": num_classes}
        try:
            return timm.create_model(name, pretrained=pretrained, **kwargs), "timm"
        except Exception as exc:
            if pretrained and _download_failed(exc):
                raise _no_download(name, exc) from None
            raise
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
                pretrained: bool = False, img_size: int | None = None,
                reinit_last: int = 0) -> BuiltModel:
    """A model with a ``num_classes``-way head (and auxiliary heads, if it has them).

    ``weights``: a local state_dict. The model is built with ``num_classes`` (random init, the
    family's own), then every tensor of the file is loaded except those of the layers to
    re-initialise: the last ``reinit_last`` :func:`layers`, and the classifier (with the
    auxiliary ones) when the file's class count differs from ``num_classes``. So the head is
    **kept** when the class counts match and ``reinit_last`` is 0. A file without auxiliary
    classifiers removes them from the model. ``pretrained``: the framework's download, a new
    head when the count differs, the last ``reinit_last`` layers re-initialised as a random
    model of the same family has them. ``img_size`` sizes ViT / MaxViT. Raises
    :class:`UsageError` for unknown names, weights that do not fit, ``reinit_last`` larger
    than the number of layers.
    """
    if weights is not None and pretrained:
        raise UsageError("pass either --weights FILE or --pretrained, not both")
    if pretrained:
        return _build_pretrained(name, num_classes, img_size, reinit_last)
    model, source = _construct(name, num_classes, False, img_size)
    head, _ = find_head(model)
    reinit = _last_layers(model, reinit_last)
    built = BuiltModel(model, head, source, AUX_WEIGHTS.get(type(model).__name__, 0.0), reinit)
    if weights is not None:
        built.head_replaced = _load_weights(built, name, weights, num_classes)
    if not aux_modules(model):
        built.aux_weight = 0.0
    return built


def _last_layers(model: nn.Module, count: int) -> list[str]:
    names = layers(model)
    if count < 0 or count > len(names):
        raise UsageError(f"--reinit-last {count}: the model has {len(names)} layers with "
                         "parameters (see `dataprep summary`)")
    return names[len(names) - count:]


def _load_weights(built: BuiltModel, name: str, weights: str | Path, num_classes: int) -> bool:
    """Load ``weights`` into ``built.model`` except the re-initialised layers and, when its
    class count differs, the heads; returns whether the head was replaced."""
    model, head = built.model, built.head
    state = load_state_dict(weights)
    key = f"{head}.weight"
    if key not in state:
        raise UsageError(f"--weights {weights} has no {key}: it is not a {name} state_dict")
    aux = aux_modules(model)
    if aux and not any(k.startswith(tuple(a + "." for a in aux)) for k in state):
        drop_aux(model)  # saved without auxiliary classifiers (aux_logits=False)
    replaced = state[key].shape[0] != num_classes
    fresh = layer_keys(model, built.reinit + ([head, *aux_heads(model)] if replaced else []))
    kept = {k: v for k, v in state.items() if k not in fresh}
    try:
        result = model.load_state_dict(kept, strict=False)
    except RuntimeError as exc:  # tensor shapes differ
        raise UsageError(f"--weights {weights} does not fit --model {name}: {exc}") from exc
    missing = [k for k in result.missing_keys if k not in fresh]
    if missing or result.unexpected_keys:
        raise UsageError(
            f"--weights {weights} does not fit --model {name}: missing "
            f"{missing[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    return replaced


def _build_pretrained(name: str, num_classes: int, img_size: int | None,
                      reinit_last: int) -> BuiltModel:
    model, source = _construct(name, None, True, img_size)
    head, module = find_head(model)
    replaced = head_outputs(module) != num_classes
    if replaced:
        for target in (head, *aux_heads(model)):
            replace_head(model, target, num_classes)
    reinit = _last_layers(model, reinit_last)
    if reinit:
        fresh, _ = _construct(name, num_classes, False, img_size)
        wanted = layer_keys(model, reinit)
        model.load_state_dict({k: v for k, v in fresh.state_dict().items() if k in wanted},
                              strict=False)
    aux = AUX_WEIGHTS.get(type(model).__name__, 0.0) if aux_modules(model) else 0.0
    return BuiltModel(model, head, source, aux, reinit, replaced)


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
