"""A sweep folder on disk: what state each run folder is in, whether it still matches the
SPEC and its data, the ``sweep.json`` ledger and the lock that keeps two sweeps apart.

The run folders are the truth (``SWEEP/runs/<name>``, each holding ``sweep-run.json``: the
flags it was made with and the identity of its data); ``sweep.json`` is a record of them,
rebuilt from them when it cannot be read. Importing this module is cheap (stdlib only).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from dataprep.errors import DataprepError, UsageError
from dataprep.train.sweep_spec import Run

LEDGER_NAME = "sweep.json"
RUN_FILE = "sweep-run.json"  # in each run folder: the flags it was made with
LOG_NAME = "train.log"
RUNS_DIR = "runs"
FORMAT = "dataprep-sweep"


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


def lock_sweep(root: Path, shard: tuple[int, int] | None) -> Any:
    """Hold ``root``'s lock file (one per --shard) for the whole sweep: a second sweep into
    the same folder (and shard) is refused rather than racing this one."""
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


def check_root(root: Path) -> None:
    """Refuse an ``-o`` that is a file, or a folder holding other files and no sweep."""
    if root.exists() and not root.is_dir():
        raise UsageError(f"-o {root} is a file; name a folder for the sweep")
    if root.is_dir() and any(root.iterdir()) and not (
            (root / RUNS_DIR).is_dir() or (root / LEDGER_NAME).exists()):
        raise UsageError(f"-o {root} holds other files and no sweep; choose an empty or new "
                         "folder")
