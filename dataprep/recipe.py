"""Recipes: strict TOML whose keys are the click parameter names of a verb.

A recipe for one verb holds a table named after the verb (``[tencrop]``), or a table whose
``verb`` key names it, or plain top-level keys. Flags given on the command line win over the
recipe. Unknown keys are errors; TOML itself rejects duplicate keys.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from dataprep.errors import UsageError

MAX_RECIPE_BYTES = 1 << 20


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Parse a TOML recipe (duplicate keys are errors); a recipe that is missing, not a
    regular file, too large, not UTF-8 or not TOML is a :class:`UsageError` naming it."""
    from dataprep.io.files import read_regular

    p = Path(path)
    if not os.path.lexists(p):
        raise UsageError(f"recipe {p} does not exist")
    data = read_regular(p, limit=MAX_RECIPE_BYTES, error=UsageError, name=f"recipe {p}")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UsageError(f"recipe {p} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                         "expected a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"recipe {p} is not valid TOML: {exc}") from exc
    except RecursionError:
        raise UsageError(f"recipe {p} nests arrays or tables too deeply to be a recipe") from None


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
        check_values(table, ctx.command, f"recipe {value} [{ctx.info_name}]", ctx)
    except UsageError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    ctx.default_map = {**(ctx.default_map or {}), **table}


def check_values(table: dict[str, Any], command: Any, where: str, ctx: Any = None) -> None:
    """Each value of ``table`` must convert to its option of the click ``command`` (an int
    for ``--short-side``, a choice for ``--format``, ...); else a :class:`UsageError` naming
    the key, the value and what was expected, instead of a traceback later (``1e400`` is an
    infinite float that no int option takes)."""
    import click

    params = {p.name: p for p in command.params if p.name}
    for key, value in table.items():
        if isinstance(value, dict):
            raise UsageError(f"{where}: {key} is a table; expected a value")
        param = params.get(key)
        if param is None:
            continue
        try:
            param.type_cast_value(ctx or click.Context(command), value)
        except (click.BadParameter, TypeError, ValueError, OverflowError, AttributeError) as exc:
            # click converts from text: a TOML float for a flag fails inside it (AttributeError)
            detail = exc.message if isinstance(exc, click.BadParameter) else str(exc)
            raise UsageError(f"{where}: {key} = {value!r:.80} is not valid ({detail}); "
                             f"expected {_expected(param)}") from None


def _expected(param: Any) -> str:
    """What ``param`` takes, in words: ``integer range x>=1``, ``choice``, ..."""
    name = getattr(param.type, "name", "value")
    describe = getattr(param.type, "_describe_range", None)  # click's numeric ranges
    if describe is not None:
        name = f"{name} {describe()}"
    elif getattr(param.type, "choices", None):
        name = f"one of {', '.join(map(str, param.type.choices))}"
    return f"{'a list of ' if param.multiple or param.nargs != 1 else ''}{name}"
