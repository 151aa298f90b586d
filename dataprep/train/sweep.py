"""``dataprep sweep SPEC.toml -o SWEEP``: many ``dataprep train`` runs from one TOML file.

The SPEC (strict TOML; keys are ``dataprep train``'s parameter names, dashes or underscores)::

    [base]                     # flags every run shares; ``data`` is train's DATA argument
    data = "shards"
    model = "resnet18"
    epochs = 5
    [grid]                     # lists: one run per element of their cartesian product
    optimizer = ["sgd", "adam"]
    lr = [0.01, 0.001]
    [[variant]]                # optional named runs: base + these overrides (besides the grid)
    name = "adam-then-sgd"
    optimizer = "adam"
    lr = 0.001
    [variant.then]             # optional second stage of this variant
    optimizer = "sgd"
    lr = 0.001
    [then]                     # optional second stage of every other run

A run is base + its overrides; a second stage is its first stage's flags + ``then``'s, started
from the first stage's ``best.pt`` (``--weights``: the model's weights only, a fresh optimizer;
``--reinit-last`` and ``--pretrained`` are reset unless ``then`` sets them). Every key and value
is checked against the real ``train`` command (its click types, then ``TrainConfig.validate``)
before any run starts: a typo is refused with the closest flag names.

Each run is an ordinary run folder ``SWEEP/runs/<name>``: grid runs are named by their grid
values (``optimizer=adam,lr=0.001``), variants by ``name``, second stages ``<name>+then``.
Runs go one after another, each ``python -m dataprep train`` in its own process (its output
also in ``RUN/train.log``); ``RUN/sweep-run.json`` holds the flags it was made with. A rerun
reads every run folder: finished runs (all epochs, or stopped early / diverged) are skipped, an
interrupted one continues with ``--resume`` from its ``last.pt``, and a run whose flags in the
SPEC changed is refused, naming the flag. ``sweep-run.json`` also holds the identity of the
data the run was trained on (:func:`data_identity`): a finished or interrupted run whose data
folder holds other data now is refused too. ``-o`` may not be, be inside or hold a run's
data. ``SWEEP/sweep.json`` (written atomically) records each run's state, command and times,
and the current SPEC's run names (``dataprep compare SWEEP`` shows those). At the end,
:func:`dataprep.train.compare.compare` writes ``SWEEP/compare.md``, ``compare.csv`` and
``compare.png``.

Importing this module is cheap (click and stdlib only).
"""

from __future__ import annotations

import difflib
import fcntl
import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from dataprep.errors import DataprepError, UsageError, cli_message

LEDGER_NAME = "sweep.json"
RUN_FILE = "sweep-run.json"  # in each run folder: the flags it was made with
LOG_NAME = "train.log"
RUNS_DIR = "runs"
THEN_SUFFIX = "+then"
SPEC_TABLES = ("base", "grid", "variant", "then")
SWEEP_OWNED = {"out": "-o is the run folder the sweep names",
               "resume": "the sweep resumes interrupted runs itself",
               "overwrite": "the sweep never replaces a run; delete its folder instead"}
MAX_NAME = 120  # characters of a run name before it is shortened with a hash
FORMAT = "dataprep-sweep"
Log = Callable[[str], None]


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
    path: str
    runs: list[Run]


# -- the SPEC --------------------------------------------------------------------------------


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


# -- the sweep folder ------------------------------------------------------------------------


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"2/3"`` -> ``(2, 3)``: the second of every three run groups."""
    if not text:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise UsageError(f"--shard {text!r}: expected I/N with 1 <= I <= N, e.g. --shard 1/4")
    return int(m.group(1)), int(m.group(2))


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_state(run: Run, run_dir: Path) -> str:
    """``finished`` (every epoch, or stopped: early_stop / diverged), ``interrupted``
    (``last.pt`` of an unfinished run: resumed), or ``new``; from the run folder alone."""
    history = read_metrics(run_dir)
    if history and (history[-1]["epoch"] >= run.epochs or history[-1].get("stopped")):
        return "finished"
    if (run_dir / "last.pt").exists():
        return "interrupted"
    return "new"


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    a, b = old.get("flags", {}), new["flags"]
    out = [f"{k}: {a.get(k, '(unset)')!r} then, {b.get(k, '(unset)')!r} now"
           for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if old.get("after") != new["after"]:
        out.append(f"starts from: {old.get('after')!r} then, {new['after']!r} now")
    return out


def data_identity(data: Any) -> dict[str, Any] | None:
    """What a run's validation figures depend on: the sha256 of the train and val entries of
    the data folder's ledger (``dataprep.json``: their shards' names, sizes and sha256), the
    class list and the val image count. None for data without a readable ledger (a URL, a
    folder not written by dataprep): nothing to compare then."""
    from dataprep.io.manifest import read_ledger

    if not isinstance(data, str) or "://" in data or not os.path.isdir(data):
        return None
    try:
        splits = read_ledger(data).get("splits", {})
    except (DataprepError, OSError):
        return None
    entries = {s: _data_entry(splits.get(s)) for s in ("train", "val")}
    if not any(entries.values()):
        return None
    blob = json.dumps(entries, sort_keys=True).encode()
    val, train = splits.get("val") or {}, splits.get("train") or {}
    classes = val.get("classes") or train.get("classes")
    shards = val.get("shards") if isinstance(val.get("shards"), list) else []
    return {"sha256": hashlib.sha256(blob).hexdigest(),
            "classes": classes if isinstance(classes, list) else None,
            "val_samples": sum(int(sh.get("num_samples", 0)) for sh in shards
                               if isinstance(sh, dict)) if val else None}


def _data_entry(entry: Any) -> Any:
    """A split's ledger entry, less what changes when the same data is written again."""
    if not isinstance(entry, dict) or "shards" not in entry:
        return entry
    return {k: entry[k] for k in ("format", "classes", "shards") if k in entry}


def _data_changes(old: dict[str, Any], new: dict[str, Any] | None) -> list[str]:
    if new is None:
        return ["its data has no readable dataprep.json now"]
    out = []
    if old.get("classes") != new.get("classes"):
        a, b = old.get("classes") or [], new.get("classes") or []
        out.append(f"{len(a)} classes then, {len(b)} now")
    if old.get("val_samples") != new.get("val_samples"):
        out.append(f"{old.get('val_samples')} val images then, {new.get('val_samples')} now")
    if not out and old.get("sha256") != new.get("sha256"):
        out.append(f"shards sha256 {str(old.get('sha256'))[:12]} then, "
                   f"{str(new.get('sha256'))[:12]} now")
    return out


def check_existing(runs: list[Run], root: Path) -> None:
    """Refuse before anything runs when a run folder was made with other flags, or a finished
    or interrupted run was trained on other data than its data folder holds now."""
    identities: dict[str, dict[str, Any] | None] = {}
    for run in runs:
        path = root / RUNS_DIR / run.name / RUN_FILE
        if not path.exists():
            if (root / RUNS_DIR / run.name / "metrics.jsonl").exists():
                raise UsageError(f"{path.parent} holds a run the sweep did not start (no "
                                 f"{RUN_FILE}); move it away or use another -o")
            continue
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"{path} cannot be read ({exc}); delete that run folder to "
                             "start it again") from None
        diff = _differences(old, run.identity)
        if diff:
            raise UsageError(f"run {run.name} in {root} was made with other flags ("
                             f"{'; '.join(diff)}); restore the spec, delete "
                             f"{path.parent} to run it again, or use another -o")
        if old.get("data_identity") is None or run_state(run, path.parent) == "new":
            continue
        data = str(run.flags.get("data"))
        if data not in identities:
            identities[data] = data_identity(data)
        changes = (_data_changes(old["data_identity"], identities[data])
                   if old["data_identity"] != identities[data] else [])
        if changes:
            raise UsageError(f"run {run.name} in {root} was trained on other data than "
                             f"{data} holds now ({'; '.join(changes)}); use another -o, or "
                             f"delete {path.parent} to train it again")


class Ledger:
    """``sweep.json``: each run's state, command and times; rewritten atomically."""

    def __init__(self, path: Path, spec: str, shard: tuple[int, int] | None) -> None:
        self.path = path
        self.data: dict[str, Any] = {"format": FORMAT, "version": 1, "runs": {}}
        if path.exists():
            try:
                self.data = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                pass  # rebuilt from the run folders, which are the truth
            self.data.setdefault("runs", {})
        self.data.update(spec=os.path.abspath(spec),
                         shard=f"{shard[0]}/{shard[1]}" if shard else None)

    def name_runs(self, names: list[str]) -> None:
        """Record the current SPEC's runs (``names``): `dataprep compare SWEEP` shows these."""
        self.data["names"] = names
        self.save()

    def update(self, name: str, **values: Any) -> None:
        self.data["runs"].setdefault(name, {}).update(values)
        self.save()

    def save(self) -> None:
        from dataprep.io import durable

        self.path.parent.mkdir(parents=True, exist_ok=True)
        durable.write_atomic(self.path, (json.dumps(self.data, indent=2) + "\n").encode())


def launch_command(run_dir: Path, argv: list[str], nproc: int = 1) -> list[str]:
    """The process of one run: ``python -m dataprep train ...``, under ``torchrun``
    (``torch.distributed.run --standalone``) for ``nproc`` > 1."""
    tail = ["-m", "dataprep", "train", *argv, "-o", str(run_dir)]
    if nproc > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", str(nproc), *tail]
    return [sys.executable, *tail]


def _env(devices: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if devices:
        env["CUDA_VISIBLE_DEVICES"] = devices
    return env


def _run_process(cmd: list[str], log_path: Path, env: dict[str, str], echo: bool) -> int:
    """Run ``cmd``, its output to ``log_path`` (appended) and, with ``echo``, to stderr.
    On an interrupt the child is stopped too (SIGINT, then SIGKILL after 30 s)."""
    from dataprep.io import durable

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    assert proc.stdout is not None
    try:
        with durable.open_new(log_path, append=True) as log:
            while chunk := os.read(proc.stdout.fileno(), 1 << 16):
                log.write(chunk)
                log.flush()
                if echo:
                    sys.stderr.buffer.write(chunk)
                    sys.stderr.buffer.flush()
        return proc.wait()
    except BaseException:
        import signal

        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        raise


@dataclass
class SweepResult:
    out: str
    runs: list[Run]
    states: dict[str, str]  # name -> finished | failed | blocked | skipped (other shard) ...
    estimate_s: float | None = None  # --dry-run
    compared: Any = None  # the Comparison written at the end

    @property
    def failed(self) -> list[str]:
        return [n for n, s in self.states.items() if s in ("failed", "blocked")]


def _lock(root: Path, shard: tuple[int, int] | None) -> Any:
    root.mkdir(parents=True, exist_ok=True)
    name = f".sweep-{shard[0]}-of-{shard[1]}.lock" if shard else ".sweep.lock"
    f = open(root / name, "a")  # noqa: SIM115 - held for the whole sweep
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise UsageError(f"another sweep is running in {root} (it holds {root / name})"
                         ) from None
    return f


def _check_root(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise UsageError(f"-o {root} is a file; name a folder for the sweep")
    if root.is_dir() and any(root.iterdir()) and not (
            (root / RUNS_DIR).is_dir() or (root / LEDGER_NAME).exists()):
        raise UsageError(f"-o {root} holds other files and no sweep; choose an empty or new "
                         "folder")


def sweep(spec_path: str | Path, out: str | Path, *, dry_run: bool = False,
          shard: tuple[int, int] | None = None, max_runs: int | None = None, nproc: int = 1,
          devices: str | None = None, probe_steps: int = 5, echo: bool = True,
          log: Log = print) -> SweepResult:
    """Run (or with ``dry_run`` list and time) the SPEC's runs into ``out``; see the module
    docstring. ``shard=(i, n)`` takes every n-th run group from the i-th; ``max_runs`` stops
    after that many runs were started (the rest stay for the next call). Raises
    :class:`UsageError` for a bad SPEC or a changed run before anything runs."""
    spec = load_spec(spec_path)
    root = Path(out)
    from dataprep.jobs.output import OutputFolder

    datas = {str(r.flags["data"]) for r in spec.runs if "data" in r.flags}
    OutputFolder(root).check_inputs(sorted(datas))  # -o in, at or holding a run's data
    _check_root(root)
    mine = [r for r in spec.runs if shard is None or r.group % shard[1] == shard[0] - 1]
    check_existing(spec.runs, root)
    params = train_params()
    states = {r.name: ("skipped" if r not in mine else
                       run_state(r, root / RUNS_DIR / r.name)) for r in spec.runs}
    if dry_run:
        return _dry_run(spec, mine, root, states, params, probe_steps, nproc, devices, log)
    lock = _lock(root, shard)
    try:
        ledger_name = (f"sweep-{shard[0]}-of-{shard[1]}.json" if shard else LEDGER_NAME)
        ledger = Ledger(root / ledger_name, spec.path, shard)
        ledger.name_runs([r.name for r in spec.runs])
        started = 0
        for i, run in enumerate(mine):
            run_dir = root / RUNS_DIR / run.name
            state = states[run.name]
            label = f"[{i + 1}/{len(mine)}] {run.name}"
            if state == "finished":
                log(f"{label}: finished before, skipped")
                ledger.update(run.name, state="finished", stage=run.stage, after=run.after)
                continue
            if run.after and states.get(run.after) == "pending":
                log(f"{label}: left for the next call (after {run.after})")
                states[run.name] = "pending"
                continue
            if run.after and states.get(run.after) != "finished":
                log(f"{label}: not started ({run.after} did not finish)")
                states[run.name] = "blocked"
                ledger.update(run.name, state="blocked", stage=run.stage, after=run.after)
                continue
            if max_runs is not None and started >= max_runs:
                log(f"{label}: left for the next call (--max-runs {max_runs})")
                states[run.name] = "pending"
                continue
            started += 1
            states[run.name] = _start(run, run_dir, root, state, ledger, params, nproc,
                                      devices, echo, label, log)
    finally:
        lock.close()
    result = SweepResult(str(root), spec.runs, states)
    done = [root / RUNS_DIR / r.name for r in spec.runs
            if (root / RUNS_DIR / r.name / "metrics.jsonl").exists()]
    if done:
        from dataprep.train.compare import compare

        result.compared = compare(done, root)
    return result


def _start(run: Run, run_dir: Path, root: Path, state: str, ledger: Ledger,
           params: dict[str, click.Parameter], nproc: int, devices: str | None, echo: bool,
           label: str, log: Log) -> str:
    """One run, to its end; its state afterwards (``finished`` or ``failed``)."""
    from dataprep.io import durable

    argv = train_argv(run.flags, params)
    if run.after:
        best = root / RUNS_DIR / run.after / "best.pt"
        if not best.exists():
            log(f"{label}: not started ({best} is missing: the first stage needs validation "
                "data to keep a best.pt)")
            ledger.update(run.name, state="blocked", stage=run.stage, after=run.after)
            return "blocked"
        argv += ["--weights", str(best.resolve())]
    if state == "interrupted":
        argv.append("--resume")
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {"name": run.name, "stage": run.stage, **run.identity,
              "data_identity": data_identity(run.flags.get("data"))}
    if state == "interrupted" and (run_dir / RUN_FILE).exists():
        try:  # resumed: it keeps the data it started on (checked equal before)
            record["data_identity"] = json.loads((run_dir / RUN_FILE).read_text()).get(
                "data_identity", record["data_identity"])
        except (OSError, json.JSONDecodeError):
            pass
    durable.write_atomic(run_dir / RUN_FILE, (json.dumps(record, indent=2) + "\n").encode())
    cmd = launch_command(run_dir, argv, nproc)
    log(f"{label}: {'resuming' if state == 'interrupted' else 'training'} "
        f"({' '.join(cmd[cmd.index('train'):])})")
    t0 = time.time()
    ledger.update(run.name, state="running", stage=run.stage, after=run.after, command=cmd,
                  started_at=t0, resumed=state == "interrupted")
    try:
        code = _run_process(cmd, run_dir / LOG_NAME, _env(devices), echo)
    except BaseException:
        ledger.update(run.name, state="interrupted", ended_at=time.time())
        raise
    history = read_metrics(run_dir)
    stopped = history[-1].get("stopped") if history else None
    ok = run_state(run, run_dir) == "finished"
    new_state = "finished" if ok else "failed"
    ledger.update(run.name, state=new_state, returncode=code, ended_at=time.time(),
                  seconds=round(time.time() - t0, 3), epochs=len(history), stopped=stopped)
    if not ok:
        log(f"{label}: failed (exit {code}); see {run_dir / LOG_NAME}")
    elif history and "val_top1" in history[-1]:
        best = max(h.get("val_top1", 0.0) for h in history)
        log(f"{label}: best val top-1 {best:.4f} after {len(history)} epoch(s)"
            f"{f' ({stopped})' if stopped else ''}")
    return new_state


# -- --dry-run -------------------------------------------------------------------------------


def _dry_run(spec: Spec, mine: list[Run], root: Path, states: dict[str, str],
             params: dict[str, click.Parameter], probe_steps: int, nproc: int,
             devices: str | None, log: Log) -> SweepResult:
    """List the runs; with ``probe_steps``, time that many steps (and one validation) of the
    first run to be trained and extrapolate to every remaining epoch."""
    todo = [r for r in mine if states[r.name] != "finished"]
    probe = _probe(todo[0], params, probe_steps, nproc, devices) if todo and probe_steps else None
    total = 0.0
    log(f"{len(spec.runs)} run(s) in {spec.path}"
        + (f"; this shard: {len(mine)}" if len(mine) != len(spec.runs) else ""))
    for i, run in enumerate(spec.runs):
        state = states[run.name]
        left = run.epochs - len(read_metrics(root / RUNS_DIR / run.name))
        what = {"finished": "finished, skipped", "skipped": "another shard's",
                "interrupted": f"resume: {left} of {run.epochs} epoch(s) left",
                "new": f"{run.epochs} epoch(s)"}[state]
        line = f"{i + 1:>3}. {run.name}: {what}"
        if run.after:
            line += f", from {run.after}/best.pt"
        if probe and state in ("new", "interrupted"):
            seconds = probe.estimate(run, left)
            total += seconds
            line += f", ~{_duration(seconds)}"
        log(line)
        log(f"     dataprep train {' '.join(train_argv(run.flags, params))}")
    if probe:
        log(f"estimated {_duration(total)} in all, from {probe.steps} steps of "
            f"{todo[0].name} ({probe.per_image * 1e3:.2f} ms per training image, "
            f"{probe.val_per_image * 1e3:.2f} ms per val image, {probe.startup:.0f} s to "
            "start); runs with other models, sizes or data will differ")
    return SweepResult(str(root), spec.runs, states, estimate_s=total if probe else None)


@dataclass
class Probe:
    steps: int
    per_image: float  # seconds per training image
    val_per_image: float
    val_samples: int
    train_samples: int  # samples x views of the probed data, per epoch
    startup: float  # seconds from the start of the process to the first step, and the end

    def estimate(self, run: Run, epochs: int) -> float:
        batch = int(run.params.get("batch_size") or 1)
        steps = run.params.get("steps_per_epoch") or max(self.train_samples // batch, 1)
        epoch = steps * batch * self.per_image + self.val_samples * self.val_per_image
        return self.startup + max(epochs, 0) * epoch


def _probe(run: Run, params: dict[str, click.Parameter], steps: int, nproc: int,
           devices: str | None) -> Probe:
    # a second stage's first-stage weights do not exist yet: the same model, initialised
    argv = train_argv(run.flags, params)
    argv += ["--epochs", "1", "--steps-per-epoch", str(steps), "--no-progress"]
    with tempfile.TemporaryDirectory(prefix="dataprep-probe-") as tmp:
        cmd = launch_command(Path(tmp) / "probe", argv, nproc)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(devices))
        wall = time.perf_counter() - t0
        if proc.returncode:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise UsageError(f"the probe of run {run.name} failed: {tail[0]}")
        m = read_metrics(Path(tmp) / "probe")[-1]
        cfg = json.loads((Path(tmp) / "probe" / "config.json").read_text())
    resolved = cfg.get("resolved", {})
    views = resolved.get("views_per_sample") or 1
    per_sample = views if cfg.get("lazy_views") == "expand" else 1
    val_samples = int(m.get("val_samples") or 0)
    val_seconds = float(m.get("val_seconds") or 0.0)
    return Probe(steps, m["train_seconds"] / max(m["train_samples"], 1),
                 val_seconds / max(val_samples, 1), val_samples,
                 int((resolved.get("train_samples") or 0) * per_sample),
                 max(wall - m["train_seconds"] - val_seconds, 0.0))


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# -- the command -----------------------------------------------------------------------------


@click.command("sweep")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Sweep folder: runs/<name>/ (one train run folder each), sweep.json, "
                   "compare.md/csv/png.")
@click.option("--dry-run", is_flag=True,
              help="List the runs and their commands, time --probe-steps steps of the first "
                   "run to train and estimate the whole sweep; trains nothing.")
@click.option("--probe-steps", type=click.IntRange(min=0), default=5, show_default=True,
              help="Training steps the --dry-run probe times (0: no probe, no estimate).")
@click.option("--shard", default=None, metavar="I/N",
              help="Run only every N-th run group, starting with the I-th (1-based); a "
                   "second stage stays with its first. For several machines.")
@click.option("--max-runs", type=click.IntRange(min=1), default=None, metavar="N",
              help="Start at most N runs this time; the next call goes on.")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes per run (torchrun --standalone --nproc_per_node N): all the "
                   "GPUs of this machine for each run in turn.")
@click.option("--devices", default=None, metavar="LIST",
              help="CUDA_VISIBLE_DEVICES of every run, e.g. 0,1 (with --nproc 2).")
@click.option("--quiet", is_flag=True, help="Do not echo each run's output (RUN/train.log "
                                            "has it).")
def sweep_cmd(spec: str, out: str, dry_run: bool, probe_steps: int, shard: str | None,
              max_runs: int | None, nproc: int, devices: str | None, quiet: bool) -> None:
    """Train every run a SPEC.toml describes, one after another, then compare them.

    SPEC: [base] flags every run shares (train's flag names, dashes or underscores; data =
    train's DATA); [grid] lists, one run per combination; [[variant]] named runs (name = ...
    plus overrides); [then] (or [variant.then]) a second stage that starts from the first
    stage's best.pt, e.g. Adam, then SGD. Every key and value is checked against `dataprep
    train` before anything runs.

    \b
      [base]
      data = "shards"
      model = "resnet18"
      epochs = 5
      [grid]
      optimizer = ["sgd", "adam"]
      lr = [0.01, 0.001]

    \b
      dataprep sweep spec.toml -o sweeps/opt --dry-run     # runs, commands, estimated time
      dataprep sweep spec.toml -o sweeps/opt               # train; rerun to resume
      dataprep compare sweeps/opt -o sweeps/opt            # the table again

    Each run is an ordinary run folder SWEEP/runs/<name> (optimizer=adam,lr=0.001; a
    variant's name; <name>+then). A rerun skips finished runs, resumes an interrupted one
    (train --resume) and refuses a run whose flags the SPEC changed or whose data folder
    now holds other data (other shards, classes or val count). At the end, compare
    writes SWEEP/compare.md, compare.csv and compare.png.

    Several machines: give each the same SPEC and --shard I/N (I = 1..N), with a shared -o or
    one -o each; when all are done, `dataprep compare` over every SWEEP/runs/* folder (or the
    shared SWEEP) makes one table.
    """
    try:
        result = sweep(spec, out, dry_run=dry_run, shard=parse_shard(shard), max_runs=max_runs,
                       nproc=nproc, devices=devices, probe_steps=probe_steps, echo=not quiet,
                       log=lambda line: click.echo(line, err=True))
    except (DataprepError, OSError) as exc:
        if (message := cli_message(exc)) is None:
            raise
        raise click.ClickException(message) from exc
    if dry_run:
        return
    if result.compared is not None:
        click.echo("\n".join(result.compared.lines()))
        click.echo(f"comparison: {out}/compare.md, compare.csv, compare.png")
    pending = [n for n, s in result.states.items() if s == "pending"]
    if pending:
        click.echo(f"{len(pending)} run(s) left: run the same command again to go on")
    if result.failed:
        raise click.ClickException(f"{len(result.failed)} run(s) did not finish: "
                                   f"{', '.join(result.failed)} (see each RUN/{LOG_NAME})")
