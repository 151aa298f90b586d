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
Every value is converted by the click type of the flag it stands for (top-level keys: those of
``run``, ``split`` and the writing verbs; ``[split]``: ``split``'s; a split's table: its
verb's), and every table is checked before anything is written.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from dataprep.cli_options import _all_skipped, cluster_options, reports_errors
from dataprep.errors import UsageError
from dataprep.options import Log
from dataprep.recipe import (
    check_keys,
    check_values,
    convert_values,
    did_you_mean,
    load_recipe,
    normalize,
)

VERBS = ("resize", "tencrop", "shard")
# recipe key (click name) -> the library keyword argument it sets, where they differ
LIBRARY_NAMES = {"format": "fmt", "hflip": "flip"}
# top-level key -> the command whose flag of that name converts it
TOP_FLAGS = {"src": "run", "out": "run", "jobs": "run", "overwrite": "run", "root": "split",
             "seed": "split", "on_error": "shard"}
TOP_KEYS = set(TOP_FLAGS)
SPLIT_KEYS = {"ratio", "test_ratio", "seed", "per_class_limit", "group_by", "balance"}


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


def _commands() -> dict[str, Any]:
    """The click commands whose flags the recipe's tables hold."""
    from dataprep.write_cli import resize_cmd, shard_cmd, split_cmd, tencrop_cmd

    return {"split": split_cmd, "resize": resize_cmd, "tencrop": tencrop_cmd,
            "shard": shard_cmd, "run": run_cmd}


def _library_kwargs(verb: str, table: dict[str, Any], where: str) -> dict[str, Any]:
    """Recipe keys (click names) -> library keyword arguments (``format`` -> ``fmt``), each
    value converted by the verb's flag of that name. Allowed: the verb's flags that its library
    function takes, less the ones ``run`` sets itself (src, out, split)."""
    command = _commands()[verb]
    library = set(inspect.signature(_verb_function(verb)).parameters)
    allowed = {p.name for p in command.params
               if p.name and p.name not in ("src", "out", "split")
               and LIBRARY_NAMES.get(p.name, p.name) in library}
    table = normalize(table)
    check_keys(table, allowed, where)
    kwargs = check_values(table, command, where, click.Context(command))
    return {LIBRARY_NAMES.get(k, k): v for k, v in kwargs.items()}


def _top_level(spec: dict[str, Any], where: str) -> dict[str, Any]:
    top = normalize({k: v for k, v in spec.items() if not isinstance(v, dict)})
    check_keys(top, TOP_KEYS, where)
    commands = _commands()
    params = {key: next(p for p in commands[verb].params if p.name == key)
              for key, verb in TOP_FLAGS.items()}
    return convert_values(top, params, where, click.Context(commands["run"]))


def _split_table(spec: dict[str, Any], where: str) -> dict[str, Any]:
    table = normalize(spec.get("split", {}))
    check_keys(table, SPLIT_KEYS, where)
    command = _commands()["split"]
    return check_values(table, command, where, click.Context(command))


def _plans(spec: dict[str, Any], recipe: Any, split_names: list[str]
           ) -> dict[str, tuple[str, dict[str, Any]]]:
    """split name -> (verb, library kwargs) for every table but [split]; an unknown table, or
    one without a known verb, is a :class:`UsageError`."""
    known = ["split", *split_names]
    plans: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, table in spec.items():
        if not isinstance(table, dict) or name == "split":
            continue
        if name not in split_names:
            if name == "test":
                raise UsageError(f"recipe {recipe} [test]: there is no test split; set "
                                 "test_ratio in [split] to make one")
            raise UsageError(f"recipe {recipe}: unknown table [{name}]"
                             f"{did_you_mean(name, [*known, 'test'], '[{}]')}; known tables are "
                             f"{', '.join(f'[{k}]' for k in known)}")
        verb = table.get("verb")
        if not isinstance(verb, str) or verb not in VERBS:
            raise UsageError(f"recipe {recipe} [{name}]: 'verb' must be one of {', '.join(VERBS)}"
                             f", got {verb!r:.80}")
        plans[name] = (verb, _library_kwargs(verb, {k: v for k, v in table.items()
                                                    if k != "verb"},
                                             f"recipe {recipe} [{name}]"))
    return plans


def run(recipe: str | Path | dict[str, Any], *, src: str | None = None, out: str | None = None,
        jobs: int | None = None, overwrite: bool = False, dry_run: bool = False,
        log: Log | None = None) -> RunResult:
    """Execute a chain recipe (see the module docstring). Every table is checked first: a
    mistake anywhere in the recipe writes nothing. ``dry_run``: the split's table and each
    job's plan (estimated size), nothing written. ``log`` receives each job's plan line."""
    from dataprep.jobs.split import split

    spec = load_recipe(recipe) if not isinstance(recipe, dict) else recipe
    top = _top_level(spec, f"recipe {recipe} (top level)")
    split_table = _split_table(spec, f"recipe {recipe} [split]")
    split_names = ["train", "val"] + (["test"] if split_table.get("test_ratio", 0) > 0 else [])
    plans = _plans(spec, recipe, split_names)
    src = src or top.get("src")
    out = out or top.get("out")
    if not src or not out:
        raise UsageError(f"recipe {recipe} needs 'src' and 'out' (or pass --src / -o)")
    jobs = jobs if jobs is not None else top.get("jobs")
    overwrite = overwrite or top.get("overwrite", False)
    seed = top.get("seed", 0)
    out_dir = Path(out)
    split_table.setdefault("seed", seed)
    result = split(src, out_dir / "splits", root=top.get("root"), overwrite=overwrite,
                   dry_run=dry_run, **split_table)
    run_result = RunResult(str(out_dir), result.lines())
    for name, records in result.splits.items():
        if name not in plans:
            continue  # this split is only written as a manifest
        verb, kwargs = plans[name]
        kwargs = dict(kwargs)
        kwargs.setdefault("jobs", jobs)
        kwargs.setdefault("on_error", top.get("on_error", "skip"))
        if verb in ("shard", "tencrop"):  # tencrop: the seed of --color-jitter / --pca-lighting
            kwargs.setdefault("seed", seed)
        kwargs["overwrite"] = overwrite or kwargs.get("overwrite", False)
        kwargs["dry_run"] = dry_run or kwargs.get("dry_run", False)
        if log is not None:
            kwargs.setdefault("log", lambda line, split=name: log(f"[{split}] {line}"))
        fmt = kwargs.get("fmt", "webdataset")
        dest = out_dir / (name if fmt == "folder" else "shards")
        fn = _verb_function(verb)
        manifest = str(out_dir / "splits" / f"{name}.jsonl")
        if verb == "shard" and not dry_run:  # reads the manifest split wrote
            run_result.reports[name] = fn(manifest, dest, **kwargs)
        else:
            run_result.reports[name] = fn(manifest, dest, records=records,
                                          classes=result.classes, **kwargs)
    return run_result


@click.command("run")
@click.argument("recipe", type=click.Path(exists=True, dir_okay=False))
@click.option("--src", default=None, help="Override the recipe's src (the images to split).")
@click.option("-o", "--out", default=None, type=click.Path(file_okay=False),
              help="Override the recipe's output folder.")
@click.option("--jobs", "-j", type=int, default=None,
              help="Worker processes [default: all cores]; -2: all but one.")
@click.option("--overwrite", is_flag=True, help="Replace earlier output.")
@click.option("--dry-run", is_flag=True,
              help="Print the split's table and each job's plan (estimated size, free space); "
                   "write nothing.")
@cluster_options
@reports_errors
def run_cmd(recipe, src, out, jobs, overwrite, dry_run):
    """Run a whole chain from a TOML recipe: split, then resize/tencrop/shard per split.

    Images go straight from the sources into the shards: no intermediate image files.
    """
    result = run(recipe, src=src, out=out, jobs=jobs, overwrite=overwrite, dry_run=dry_run,
                 log=click.echo)
    for line in result.lines():
        click.echo(line)
    empty = [split for split, r in result.reports.items() if _all_skipped(r)]
    if empty:
        which = f"split {empty[0]}" if len(empty) == 1 else f"splits {', '.join(empty)}"
        raise click.ClickException(
            f"every input of {which} was skipped, so nothing usable was written there; the "
            "reasons are in "
            f"{os.path.join(result.reports[empty[0]].out_dir, 'errors.jsonl')}")
