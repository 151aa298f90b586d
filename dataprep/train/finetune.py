"""Layer-wise fine-tuning: which parameters train, and at which learning rate.

Rules, applied to every parameter (each belongs to one *layer*, the module that owns it; see
:func:`dataprep.train.models.all_layers`):

1. ``--train-last N`` / ``--freeze-until NAME`` set a boundary layer (the N-th last of
   :func:`~dataprep.train.models.layers`, or the first layer named ``NAME`` or inside module
   ``NAME``); every layer registered before it is frozen, auxiliary classifiers included.
2. Otherwise the first ``--lr-group PATTERN=MULT`` whose pattern matches wins: a pattern matches
   a parameter when :func:`fnmatch.fnmatchcase` matches its name or the name of a module that
   holds it (``classifier.6`` matches ``classifier.6.weight``; ``features`` matches all of
   ``features.*``). ``MULT`` multiplies ``--lr``; 0 freezes (``'*=0'`` freezes the rest).
3. Otherwise the classifier learns at ``--lr x --head-lr-mult`` (group ``head``), everything
   else at ``--lr`` (group ``backbone``).

Frozen parameters get ``requires_grad=False`` and stay out of the optimizer; BatchNorm layers
that are frozen keep their statistics (eval mode) while the rest trains.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from torch import nn

from dataprep.errors import UsageError
from dataprep.train.models import all_layers, layers


@dataclass(frozen=True)
class LrRule:
    """One ``--lr-group PATTERN=MULT``."""

    pattern: str
    mult: float

    @property
    def text(self) -> str:
        return f"{self.pattern}={self.mult:g}"


def parse_lr_group(text: str) -> LrRule:
    """``'classifier.6=10'`` -> ``LrRule('classifier.6', 10.0)``; the last ``=`` splits.

    Raises :class:`UsageError` for a missing pattern, a multiplier that is not a finite number
    >= 0.
    """
    pattern, sep, value = str(text).rpartition("=")
    try:
        mult = float(value)
    except ValueError:
        mult = float("nan")
    if not sep or not pattern or not mult >= 0 or mult == float("inf"):
        raise UsageError(f"--lr-group {text!r}: expected PATTERN=MULT with MULT >= 0, e.g. "
                         "--lr-group 'classifier.6=10' --lr-group '*=0'")
    return LrRule(pattern, mult)


def matches(pattern: str, param: str) -> bool:
    """Does ``pattern`` match ``param`` or one of the modules holding it?"""
    parts = param.split(".")
    return any(fnmatchcase(".".join(parts[:i]), pattern) for i in range(1, len(parts) + 1))


@dataclass
class Group:
    """Parameters trained alike: ``mult`` times the base learning rate (0: frozen)."""

    name: str
    mult: float
    params: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)
    numel: int = 0

    @property
    def frozen(self) -> bool:
        return self.mult == 0


@dataclass
class Plan:
    """The groups of one model, in table order, and each parameter's group."""

    groups: list[Group]
    of_param: dict[str, Group]
    head: str

    def trainable(self, stage: str = "all") -> set[str]:
        """Parameters that learn in ``stage`` (``"head"``: the classifier's only)."""
        return {n for n, g in self.of_param.items() if not g.frozen
                and (stage == "all" or n.startswith(self.head + "."))}

    def table(self, lr: float) -> str:
        """group, layers, parameters, lr: one line per non-empty group."""
        rows = [(g.name, f"{len(g.layers)}", f"{g.numel:,}", f"{lr * g.mult:g}")
                for g in self.groups if g.params]
        head = ("group", "layers", "parameters", "lr")
        width = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
        lines = [f"{head[0]:<{width[0]}}  {head[1]:>{width[1]}}  {head[2]:>{width[2]}}  "
                 f"{head[3]:>{width[3]}}"]
        lines += [f"{r[0]:<{width[0]}}  {r[1]:>{width[1]}}  {r[2]:>{width[2]}}  "
                  f"{r[3]:>{width[3]}}" for r in rows]
        return "\n".join(lines)


def _boundary(model: nn.Module, train_last: int | None, freeze_until: str | None) -> int:
    """Index in :func:`all_layers` of the first layer that trains (0: none frozen)."""
    if train_last is not None and freeze_until is not None:
        raise UsageError("--train-last and --freeze-until both say where training starts; "
                         "pass one")
    ordered = all_layers(model)
    if train_last is not None:
        main = layers(model)
        if not 1 <= train_last <= len(main):
            raise UsageError(f"--train-last {train_last}: the model has {len(main)} layers "
                             "with parameters (see `dataprep summary`)")
        return ordered.index(main[-train_last])
    if freeze_until is not None:
        for i, name in enumerate(ordered):
            if name == freeze_until or name.startswith(freeze_until + "."):
                return i
        close = difflib.get_close_matches(freeze_until, ordered, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"--freeze-until {freeze_until!r} is not a layer of the model{hint} "
                         "(`dataprep summary --model NAME` lists them)")
    return 0


def _owners(model: nn.Module) -> dict[str, str]:
    """parameter name -> the layer that owns it."""
    owners = {}
    for name in all_layers(model):
        prefix = f"{name}." if name else ""
        for p, _ in model.get_submodule(name).named_parameters(recurse=False):
            owners[prefix + p] = name
    return owners


def plan(model: nn.Module, head: str, *, rules: list[LrRule] | tuple[LrRule, ...] = (),
         head_lr_mult: float = 1.0, train_last: int | None = None,
         freeze_until: str | None = None) -> Plan:
    """Group every parameter of ``model`` by the rules of the module docstring.

    Raises :class:`UsageError` for a boundary that names no layer and for an ``--lr-group``
    pattern that matches no parameter (a typo would otherwise change nothing).
    """
    ordered = all_layers(model)
    start = _boundary(model, train_last, freeze_until)
    frozen_layers = set(ordered[:start])
    why = f"--train-last {train_last}" if train_last is not None else \
        f"--freeze-until {freeze_until}"
    groups = {r.text: Group(r.text, r.mult) for r in rules}
    groups.update(backbone=Group("backbone", 1.0), head=Group("head", head_lr_mult))
    groups["frozen"] = Group(f"frozen ({why})", 0.0)
    owners = _owners(model)
    of_param: dict[str, Group] = {}
    for name, p in model.named_parameters():
        layer = owners[name]
        if layer in frozen_layers:
            g = groups["frozen"]
        else:
            rule = next((r for r in rules if matches(r.pattern, name)), None)
            g = groups[rule.text] if rule else \
                groups["head" if name.startswith(head + ".") else "backbone"]
        g.params.append(name)
        g.numel += p.numel()
        if layer not in g.layers:
            g.layers.append(layer)
        of_param[name] = g
    names = list(of_param)
    for r in rules:
        if not any(matches(r.pattern, n) for n in names):
            raise UsageError(f"--lr-group {r.text!r} matches no parameter; names look like "
                             f"{', '.join(names[:2])}, ... (`dataprep summary --model NAME` "
                             "lists the layers)")
    return Plan(list(groups.values()), of_param, head)


def apply_stage(model: nn.Module, p: Plan, stage: str = "all") -> None:
    """Set ``requires_grad`` as ``p`` says for ``stage`` (``"head"`` or ``"all"``)."""
    trainable = p.trainable(stage)
    for name, param in model.named_parameters():
        param.requires_grad_(name in trainable)


def param_groups(model: nn.Module, p: Plan) -> list[dict]:
    """Optimizer parameter groups (frozen groups left out): ``params``, ``lr_mult``,
    ``name``."""
    params = dict(model.named_parameters())
    return [{"params": [params[n] for n in g.params], "lr_mult": g.mult, "name": g.name}
            for g in p.groups if g.params and not g.frozen]


def frozen_norms(model: nn.Module, p: Plan, stage: str = "all") -> list[nn.Module]:
    """BatchNorm layers none of whose parameters learn in ``stage``: they keep their
    statistics (eval mode)."""
    trainable = p.trainable(stage)
    out = []
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            prefix = f"{name}." if name else ""
            own = [prefix + n for n, _ in m.named_parameters(recurse=False)]
            if (any(own) and not any(n in trainable for n in own)) or (not own and
                                                                     stage == "head"):
                out.append(m)
    return out
