"""Recipes: strict TOML whose keys are the click parameter names of a verb.

A recipe for one verb holds a table named after the verb (``[tencrop]``), or a table whose
``verb`` key names it, or plain top-level keys. Flags given on the command line win over the
recipe. Unknown keys are errors; TOML itself rejects duplicate keys.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from dataprep.errors import UsageError


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Parse a TOML recipe (duplicate keys are errors)."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"recipe {p} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"recipe {p} is not valid TOML: {exc}") from exc


def normalize(table: dict[str, Any]) -> dict[str, Any]:
    return {k.replace("-", "_"): v for k, v in table.items()}


def table_for(recipe: dict[str, Any], verb: str) -> dict[str, Any]:
    """The part of ``recipe`` that configures ``verb``."""
    if isinstance(recipe.get(verb), dict):
        return normalize(recipe[verb])
    for value in recipe.values():
        if isinstance(value, dict) and value.get("verb") == verb:
            return normalize({k: v for k, v in value.items() if k != "verb"})
    return normalize({k: v for k, v in recipe.items() if not isinstance(v, dict)})


def check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise UsageError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(unknown)}; allowed keys are {', '.join(sorted(allowed))}")


def recipe_callback(ctx, param, value: str | None) -> None:
    """Click callback of an eager ``--recipe`` option: the verb's table becomes the context's
    ``default_map`` before the other flags are read (flags given on the command line win)."""
    import click

    if not value:
        return
    try:
        table = table_for(load_recipe(value), ctx.info_name or "")
        allowed = {p.name for p in ctx.command.params if p.name and p.name != "recipe"}
        check_keys(table, allowed, f"recipe {value} [{ctx.info_name}]")
    except UsageError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    ctx.default_map = {**(ctx.default_map or {}), **table}
