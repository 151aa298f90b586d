"""``dataprep summary``: every layer's output shape and parameter count, in execution order.

A row is a module that computes something on its own: a leaf (no children) or a container that
owns parameters directly (ViT's class token, for one). Each parameter is counted once, in the
row of the module that owns it, so the rows sum to the model's own count
(``sum(p.numel() for p in model.parameters())``), shared parameters included once.

With a fine-tuning :class:`~dataprep.train.finetune.Plan`, each row also says how it trains:
``x MULT`` of the base learning rate, ``frozen``, or ``mixed`` when its parameters differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from dataprep.train.finetune import Plan


@dataclass
class Row:
    name: str
    kind: str
    shape: str = "-"  # "-" when the forward pass never called the module
    params: int = 0
    trainable: int = 0
    calls: int = 0
    trains: str = ""  # with a plan: "x10", "x1", "frozen" or "mixed"


@dataclass
class Summary:
    model: str
    input_shape: tuple[int, ...]
    rows: list[Row] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    output_shape: str = ""

    def to_text(self) -> str:
        width = max([len("layer")] + [len(r.name) + len(r.kind) + 3 for r in self.rows])
        shape_w = max([len("output shape")] + [len(r.shape) for r in self.rows])
        planned = any(r.trains for r in self.rows)
        lines = [f"{self.model}: input {list(self.input_shape)}",
                 f"{'layer':<{width}}  {'output shape':<{shape_w}}  {'params':>12}"
                 + ("  trains (lr x)" if planned else "")]
        lines.append("-" * len(lines[-1]))
        for r in self.rows:
            label = f"{r.name} ({r.kind})"
            calls = f"  x{r.calls}" if r.calls > 1 else ""
            trains = f"  {r.trains:<14}" if planned else ""
            lines.append(f"{label:<{width}}  {r.shape:<{shape_w}}  {r.params:>12,}{trains}"
                         f"{calls}".rstrip())
        lines.append("-" * len(lines[1]))
        lines += [f"total params:         {self.total_params:,}",
                  f"trainable params:     {self.trainable_params:,}",
                  f"non-trainable params: {self.total_params - self.trainable_params:,}",
                  f"params size:          {self.total_params * 4 / 2**20:.2f} MiB (float32)",
                  f"output shape:         {self.output_shape}"]
        return "\n".join(lines)


def _shape(out: Any) -> str:
    if isinstance(out, torch.Tensor):
        return str(list(out.shape))
    if isinstance(out, (list, tuple)):
        return "(" + ", ".join(_shape(o) for o in out) + ")"
    if isinstance(out, dict):
        return "{" + ", ".join(f"{k}: {_shape(v)}" for k, v in out.items()) + "}"
    return type(out).__name__


def _trains(plan: Plan, params: list[str]) -> str:
    mults = {plan.of_param[p].mult for p in params if p in plan.of_param}
    if not mults:
        return ""
    if len(mults) > 1:
        return "mixed"
    mult = mults.pop()
    return "frozen" if mult == 0 else f"x{mult:g}"


def summarize(model: nn.Module, input_shape: tuple[int, ...], name: str = "",
              plan: Plan | None = None) -> Summary:
    """Run one forward pass on zeros of ``input_shape`` (eval mode, no grad) and tabulate;
    with ``plan``, each row says how its parameters train."""
    seen: set[int] = set()
    rows: dict[str, Row] = {}
    order: list[str] = []
    for qual, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in own)
        if next(module.children(), None) is not None and not own:
            continue
        prefix = f"{qual}." if qual else ""
        names = [prefix + n for n, p in module.named_parameters(recurse=False)
                 if any(p is q for q in own)]
        rows[qual] = Row(qual or "(model)", type(module).__name__,
                         params=sum(p.numel() for p in own),
                         trainable=sum(p.numel() for p in own if p.requires_grad),
                         trains=_trains(plan, names) if plan is not None else "")

    def hook(qual: str):
        def record(_module: nn.Module, _inputs: Any, out: Any) -> None:
            row = rows[qual]
            if row.calls == 0:
                row.shape = _shape(out)
                order.append(qual)
            row.calls += 1
        return record

    modules = dict(model.named_modules())
    handles = [modules[q].register_forward_hook(hook(q)) for q in rows]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(input_shape))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    ordered = [rows[q] for q in order] + [r for q, r in rows.items() if q not in order]
    total = sum(r.params for r in ordered)
    return Summary(name or type(model).__name__, tuple(input_shape), ordered, total,
                   sum(r.trainable for r in ordered), _shape(out))
