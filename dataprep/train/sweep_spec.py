"""A sweep's SPEC: the TOML tables, checked against the real ``train`` command, expanded
into runs with their names and ``dataprep train`` command lines.

The SPEC (strict TOML; keys are ``dataprep train``'s parameter names, dashes or underscores)
has the tables ``[base]`` (flags every run shares), ``[grid]`` (lists: one run per element of
their cartesian product), ``[[variant]]`` (named runs: base + overrides) and ``[then]`` /
``[variant.then]`` (a second stage, started from the first stage's ``best.pt``); see
:mod:`dataprep.train.sweep`. Every key and value is checked here, with the train command's
click types and then ``TrainConfig.validate``, before any run starts: a typo is refused with
the closest flag names.

Importing this module is cheap (click and stdlib only).
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from dataprep.errors import DataprepError, UsageError

THEN_SUFFIX = "+then"
SPEC_TABLES = ("base", "grid", "variant", "then")
SWEEP_OWNED = {"out": "-o is the run folder the sweep names",
               "resume": "the sweep resumes interrupted runs itself",
               "overwrite": "the sweep never replaces a run; delete its folder instead"}
MAX_NAME = 120  # characters of a run name before it is shortened with a hash


@dataclass
class Run:
    """One ``dataprep train`` of the sweep."""

    name: str
    flags: dict[str, Any]  # SPEC values by train parameter name (``data`` included)
    varied: dict[str, Any]  # what sets it apart: grid values, a variant's or then's overrides
    stage: int = 1
    after: str | None = None  # second stage: the run whose best.pt it starts from
    group: int = 0  # a first stage and its second share a group (and a --shard)
    params: dict[str, Any] = field(default_factory=dict)  # as the train command parsed them

    @property
    def identity(self) -> dict[str, Any]:
        return {"flags": self.flags, "after": self.after}

    @property
    def epochs(self) -> int:
        return int(self.params.get("epochs") or 1)


@dataclass
class Spec:
    """A checked SPEC: its path and its runs, in order."""

    path: str
    runs: list[Run]


def train_params() -> dict[str, click.Parameter]:
    """``dataprep train``'s parameters by name (``data`` is its argument), less those the
    sweep sets itself."""
    from dataprep.train.cli import train

    return {p.name: p for p in train.params
            if p.name and p.name != "recipe" and p.name not in SWEEP_OWNED}


ALIASES = {"learning_rate": "lr", "wd": "weight_decay", "bs": "batch_size", "opt": "optimizer",
           "arch": "model", "image_size": "img_size", "num_epochs": "epochs",
           "scheduler": "schedule", "lr_schedule": "schedule", "crop": "img_size"}
# other tools' names for train's flags


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    initials = "".join(part[:1] for part in word.split("_"))  # learning_rate -> lr
    for guess in (ALIASES.get(word), initials if "_" in word else None):
        if guess in choices and guess not in close:
            close.insert(0, guess)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def _check_table(table: Any, where: str, params: dict[str, click.Parameter], *,
                 lists: bool = False, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Keys normalized (``-`` -> ``_``), each a train parameter (or one of ``extra``), each
    value (each list element with ``lists``) of the type its flag takes."""
    from dataprep.recipe import convert_value

    if not isinstance(table, dict):
        raise UsageError(f"{where} must be a table of flags, e.g. [base] lr = 0.01")
    ctx = click.Context(click.Command("train"))
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name in extra:
            out[name] = value
            continue
        if name in SWEEP_OWNED:
            raise UsageError(f"{where}: {key} cannot be set in a sweep ({SWEEP_OWNED[name]})")
        if name not in params:
            raise UsageError(f"{where}: {key!r} is not a flag of dataprep train"
                             f"{_did_you_mean(name, sorted(params))} "
                             "(`dataprep train --help` lists them)")
        if name in out:
            raise UsageError(f"{where}: {key} is given twice (dashes and underscores are the "
                             "same flag)")
        if lists:
            if not isinstance(value, list) or not value:
                raise UsageError(f"{where}: {key} = {value!r:.60} must be a non-empty list of "
                                 f"values, e.g. {key} = [0.01, 0.001]")
            for v in value:
                convert_value(params[name], v, f"{where}: {key}", ctx)
        else:
            convert_value(params[name], value, f"{where}: {key}", ctx)
        out[name] = value
    return out


def load_spec(path: str | Path) -> Spec:
    """Parse and check a SPEC, expand it into runs and check each run's full command line with
    the train command's own parser and :meth:`TrainConfig.validate`. Raises
    :class:`UsageError` naming the table and key of the first problem; nothing is run."""
    from dataprep.recipe import load_recipe

    try:
        raw = load_recipe(path)
    except UsageError as exc:  # its messages say "recipe": this file is a sweep spec
        raise UsageError(str(exc).replace("recipe ", "sweep spec ", 1)) from None
    where = f"sweep spec {path}"
    for key in raw:
        if key not in SPEC_TABLES:
            hint = _did_you_mean(key, list(SPEC_TABLES))
            raise UsageError(f"{where}: unknown table {key!r}{hint}; a spec holds "
                             "[base], [grid], [[variant]] and [then]")
    params = train_params()
    base = _check_table(raw.get("base", {}), f"{where} [base]", params)
    grid = _check_table(raw.get("grid", {}), f"{where} [grid]", params, lists=True)
    then = (_check_table(raw["then"], f"{where} [then]", params) if "then" in raw else None)
    _no_weights(then, f"{where} [then]")
    variants = raw.get("variant", [])
    if not isinstance(variants, list):
        raise UsageError(f"{where}: variants are [[variant]] tables (an array of tables)")
    checked = []
    for i, v in enumerate(variants):
        w = f"{where} [[variant]] #{i + 1}"
        v = _check_table(v, w, params, extra=("name", "then"))
        if not isinstance(v.get("name"), str) or not v["name"].strip():
            raise UsageError(f"{w} needs a name = \"...\" (its run folder)")
        if "then" in v:
            v["then"] = _check_table(v["then"], f"{w} [then]", params)
            _no_weights(v["then"], f"{w} [then]")
        checked.append(v)
    runs = expand(base, grid, checked, then)
    if not any("data" in r.flags for r in runs):
        raise UsageError(f"{where}: no data: put data = \"SHARDS\" (train's DATA) in [base]")
    names: dict[str, Run] = {}
    for run in runs:
        if run.name in names:
            raise UsageError(f"{where}: two runs would be named {run.name!r}; give the "
                             "variants other names")
        names[run.name] = run
        run.params = parse_run(run, params, f"{where}: run {run.name}")
    return Spec(str(path), runs)


def _no_weights(then: dict[str, Any] | None, where: str) -> None:
    for key in ("weights", "pretrained"):
        if then and then.get(key):
            raise UsageError(f"{where}: {key} cannot be set; a second stage starts from its "
                             "first stage's best.pt")


def expand(base: dict[str, Any], grid: dict[str, list[Any]], variants: list[dict[str, Any]],
           then: dict[str, Any] | None) -> list[Run]:
    """The runs, in order: the grid's product (last key fastest), then the variants; each
    first stage followed by its second stage (a variant's own ``then``, else ``[then]``).
    Without grid and variants, the base alone is one run named ``base``."""
    runs: list[Run] = []

    def add(name: str, varied: dict[str, Any], second: dict[str, Any] | None) -> None:
        flags = {**base, **varied}
        group = len({r.group for r in runs})
        runs.append(Run(name, flags, varied, group=group))
        if second is not None:
            reset = {"reinit_last": 0, "pretrained": False}
            flags2 = {**flags, **{k: v for k, v in reset.items() if k not in second}, **second}
            flags2.pop("weights", None)  # the first stage's best.pt, given at launch
            runs.append(Run(name + THEN_SUFFIX, flags2, dict(second), stage=2, after=name,
                            group=group))

    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)) if keys else ():
        varied = dict(zip(keys, values, strict=True))
        add(run_name(varied), varied, then)
    for v in variants:
        overrides = {k: x for k, x in v.items() if k not in ("name", "then")}
        add(safe_run_name(v["name"]), overrides, v.get("then", then))
    if not runs:
        add("base", {}, then)
    return runs


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "-".join(_value_text(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    return text.rstrip("/").rsplit("/", 1)[-1] if "/" in text else text


def run_name(varied: dict[str, Any]) -> str:
    """``{"optimizer": "adam", "lr": 0.001}`` -> ``optimizer=adam,lr=0.001`` (file-safe)."""
    return safe_run_name(",".join(f"{k}={_value_text(v)}" for k, v in varied.items()))


def safe_run_name(text: str) -> str:
    """Letters, digits and ``. _ , = + -`` only (others become ``_``), no leading dot, at most
    :data:`MAX_NAME` characters (longer names end in a hash of the whole)."""
    name = re.sub(r"[^A-Za-z0-9._,=+-]", "_", text.strip()) or "_"
    if name.startswith("."):
        name = "_" + name[1:]
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        name = f"{name[:MAX_NAME - 9]}~{digest}"
    return name


def train_argv(flags: dict[str, Any], params: dict[str, click.Parameter]) -> list[str]:
    """``flags`` (SPEC values) as ``dataprep train`` arguments: DATA first, then options in
    SPEC order (a flag set false uses its ``--no-`` form)."""
    argv = [str(flags["data"])] if "data" in flags else []
    for name, value in flags.items():
        param = params[name]
        if name == "data":
            continue
        opt = next(o for o in param.opts if o.startswith("--"))
        if getattr(param, "is_flag", False):
            if value:
                argv.append(opt)
            elif param.secondary_opts:  # type: ignore[attr-defined]
                argv.append(param.secondary_opts[0])  # type: ignore[attr-defined]
            continue
        items = value if getattr(param, "multiple", False) else [value]
        for item in items:
            if isinstance(item, list):
                argv += [opt, ",".join(_token(v) for v in item)]
            else:
                argv += [opt, _token(item)]
    return argv


def _token(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def parse_run(run: Run, params: dict[str, click.Parameter], where: str) -> dict[str, Any]:
    """The run's command line through the train command's own parser, then
    :meth:`TrainConfig.validate`: the parameters as ``train`` would see them."""
    from dataprep.train.cli import train
    from dataprep.train.config import TrainConfig

    argv = train_argv(run.flags, params) + ["-o", "SWEEP-RUN"]
    try:
        ctx = train.make_context("train", argv, resilient_parsing=False)
    except click.ClickException as exc:
        raise UsageError(f"{where}: {exc.format_message()}") from None
    values = dict(ctx.params)
    values["milestones"] = [int(m) for m in values["milestones"]]
    values["lr_group"] = list(values["lr_group"])
    if run.after:  # given at launch: the first stage's best.pt
        values["weights"], values["pretrained"] = "FIRST-STAGE/best.pt", False
    try:
        TrainConfig(**values).validate()
    except DataprepError as exc:
        raise UsageError(f"{where}: {exc}") from None
    return values
