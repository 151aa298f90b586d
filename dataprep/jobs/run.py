"""``run RECIPE``: split, then a resize / tencrop / shard job per split, in one command.

Recipe layout (keys are the click parameter names of each verb)::

    src = "examples/photos"      # images to split (folder, list file or manifest)
    out = "out/photos"           # manifests go to OUT/splits, shards to OUT/shards
    [split]                      # flags of `dataprep split`
    ratio = 0.8
    [train]                      # what to do with the train split
    verb = "tencrop"             # resize | tencrop | shard
    short_side = 256
    [val]
    verb = "shard"

Records go straight from the source images into the shards: no intermediate image files.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataprep.errors import UsageError
from dataprep.recipe import check_keys, check_values, load_recipe, normalize

VERBS = ("resize", "tencrop", "shard")
TOP_KEYS = {"src", "out", "root", "jobs", "on_error", "overwrite", "seed"}


@dataclass
class RunResult:
    out_dir: str
    split_lines: list[str]
    reports: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = list(self.split_lines)
        for split, report in self.reports.items():
            out.append("")
            out.append(f"[{split}]")
            out += report.lines()
        return out


def _verb_function(verb: str):
    from dataprep.jobs.shard import shard
    from dataprep.jobs.tencrop import resize, tencrop

    return {"resize": resize, "tencrop": tencrop, "shard": shard}[verb]


def _library_kwargs(verb: str, table: dict[str, Any], where: str) -> dict[str, Any]:
    """Recipe keys (click names) -> library keyword arguments (``format`` -> ``fmt``)."""
    fn = _verb_function(verb)
    allowed = {p for p in inspect.signature(fn).parameters if p not in ("src", "out", "records",
                                                                       "classes", "split", "fmt")}
    allowed |= {"format"}
    table = normalize(table)
    check_keys(table, allowed, where)
    from dataprep.cli import cli  # each value must be one the verb's flag takes

    check_values(table, cli.commands[verb], where)
    kwargs = dict(table)
    if "format" in kwargs:
        kwargs["fmt"] = kwargs.pop("format")
    if "max_bytes" in kwargs:
        from dataprep.units import parse_size

        kwargs["max_bytes"] = parse_size(kwargs["max_bytes"])
    return kwargs


def run(recipe: str | Path | dict[str, Any], *, src: str | None = None, out: str | None = None,
        jobs: int | None = None, overwrite: bool = False) -> RunResult:
    """Execute a chain recipe (see the module docstring)."""
    from dataprep.jobs.split import split

    spec = load_recipe(recipe) if not isinstance(recipe, dict) else recipe
    top = normalize({k: v for k, v in spec.items() if not isinstance(v, dict)})
    check_keys(top, TOP_KEYS, f"recipe {recipe} (top level)")
    src = src or top.get("src")
    out = out or top.get("out")
    if not src or not out:
        raise UsageError(f"recipe {recipe} needs 'src' and 'out' (or pass --src / -o)")
    jobs = jobs if jobs is not None else top.get("jobs")
    overwrite = overwrite or bool(top.get("overwrite", False))
    out_dir = Path(out)
    split_table = normalize(spec.get("split", {}))
    check_keys(split_table, {"ratio", "test_ratio", "seed", "per_class_limit", "group_by",
                             "balance"},
               f"recipe {recipe} [split]")
    split_table.setdefault("seed", top.get("seed", 0))
    result = split(src, out_dir / "splits", root=top.get("root"), overwrite=overwrite,
                   **split_table)
    run_result = RunResult(str(out_dir), result.lines())
    for name, records in result.splits.items():
        table = spec.get(name)
        if table is None:
            continue  # this split is only written as a manifest
        if not isinstance(table, dict) or table.get("verb") not in VERBS:
            raise UsageError(f"recipe {recipe} [{name}]: 'verb' must be one of {', '.join(VERBS)}")
        verb = table["verb"]
        kwargs = _library_kwargs(verb, {k: v for k, v in table.items() if k != "verb"},
                                 f"recipe {recipe} [{name}]")
        kwargs.setdefault("jobs", jobs)
        kwargs.setdefault("on_error", top.get("on_error", "skip"))
        if verb in ("shard", "tencrop"):  # tencrop: the seed of --color-jitter / --pca-lighting
            kwargs.setdefault("seed", top.get("seed", 0))
        kwargs["overwrite"] = overwrite
        fmt = kwargs.get("fmt", "webdataset")
        dest = out_dir / (name if fmt == "folder" else "shards")
        fn = _verb_function(verb)
        if verb == "shard":
            manifest = out_dir / "splits" / f"{name}.jsonl"
            run_result.reports[name] = fn(str(manifest), dest, **kwargs)
        else:
            run_result.reports[name] = fn(str(out_dir / "splits" / f"{name}.jsonl"), dest,
                                          records=records, classes=result.classes, **kwargs)
    return run_result
