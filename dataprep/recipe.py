"""Recipes: strict TOML whose keys are the click parameter names of a verb.

A recipe for one verb holds a table named after the verb (``[tencrop]``), or a table whose
``verb`` key names it, or plain top-level keys. Flags given on the command line win over the
recipe. Unknown keys are errors, and so is a table that is named after no verb and has no
``verb`` key naming one (``[tencorp]``); both come with a "did you mean" suggestion. Keys are
the verb's command-line option names only; TOML itself rejects duplicate keys. Each value must
have the TOML type its option takes (a boolean for a flag, an integer for an integer option, a
string or an integer for a size, ...) and is then converted by the option's own click type, as the
command line would convert it; anything else is an error naming the key.
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


def did_you_mean(name: str, candidates: Any, fmt: str = "{}") -> str:
    """`` (did you mean X?)`` for the closest of ``candidates`` to ``name``, else ``""``."""
    import difflib

    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f" (did you mean {fmt.format(close[0])}?)" if close else ""


def verb_names(ctx: Any = None) -> list[str]:
    """Every ``dataprep`` verb (:data:`dataprep.verbs.VERBS`), in its recipe spelling too
    (``learning_curve``), and the commands of the group ``ctx`` runs under."""
    from dataprep.verbs import VERBS

    names = list(VERBS) + list(getattr(ctx.find_root().command, "commands", None) or {}
                               if ctx is not None else [])
    return sorted({n.replace("-", "_") for n in names} | set(names))


def check_tables(recipe: dict[str, Any], where: str, verbs: Any) -> None:
    """Every table of ``recipe`` is named after one of ``verbs`` or has a ``verb`` key naming
    one; a misspelled table (``[tencorp]``) is a :class:`UsageError` with the closest verb."""
    verbs = list(verbs)
    for name, value in recipe.items():
        if not isinstance(value, dict) or name in verbs:
            continue
        verb = value.get("verb")
        if isinstance(verb, str) and verb in verbs:
            continue
        shown = sorted({v.replace("_", "-") for v in verbs})
        raise UsageError(f"{where}: unknown table [{name}]"
                         f"{did_you_mean(name, verbs, '[{}]')}; a table is named after a "
                         f"verb ({', '.join(shown)}) or has a verb key naming one")


def table_for(recipe: dict[str, Any], verb: str, where: str | None = None,
              verbs: Any = None) -> dict[str, Any]:
    """The part of ``recipe`` that configures ``verb``; with ``where`` and ``verbs`` (see
    :func:`verb_names`), every table of the recipe is checked first (:func:`check_tables`)."""
    if where is not None and verbs is not None:
        check_tables(recipe, where, verbs)
    if isinstance(recipe.get(verb), dict):
        return normalize(recipe[verb])
    for value in recipe.values():
        if isinstance(value, dict) and value.get("verb") == verb:
            return normalize({k: v for k, v in value.items() if k != "verb"})
    return normalize({k: v for k, v in recipe.items() if not isinstance(v, dict)})


def check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        named = ", ".join(f"{k}{did_you_mean(k, allowed)}" for k in unknown)
        raise UsageError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} "
                         f"{named}; allowed keys are {', '.join(sorted(allowed))}")


def recipe_callback(ctx, param, value: str | None) -> None:
    """Click callback of an eager ``--recipe`` option: the verb's table, converted by the verb's
    own click types, becomes the context's ``default_map`` before the other flags are read
    (flags given on the command line win)."""
    import click

    if not value:
        return
    try:
        table = table_for(load_recipe(value), ctx.info_name or "", f"recipe {value}",
                          verb_names(ctx))
        allowed = {p.name for p in ctx.command.params if p.name and p.name != "recipe"}
        check_keys(table, allowed, f"recipe {value} [{ctx.info_name}]")
        table = check_values(table, ctx.command, f"recipe {value} [{ctx.info_name}]", ctx)
    except UsageError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    ctx.default_map = {**(ctx.default_map or {}), **table}


def check_values(table: dict[str, Any], command: Any, where: str, ctx: Any = None
                 ) -> dict[str, Any]:
    """``table`` with each value converted by its option of the click ``command`` (an int for
    ``--short-side``, a choice for ``--format``, a size for ``--max-bytes``, ...), as the
    command line would convert it; keys that are no option of ``command`` stay as they are.

    A value of the wrong TOML type (``"32"`` or ``true`` for an integer, ``"false"`` for a
    flag, ``1e400`` for an integer) or one the option refuses is a :class:`UsageError` naming
    the key, the value and what was expected, instead of a traceback or a silent surprise."""
    return convert_values(table, {p.name: p for p in command.params if p.name}, where,
                          ctx or _context(command))


def convert_values(table: dict[str, Any], params: dict[str, Any], where: str,
                   ctx: Any) -> dict[str, Any]:
    """:func:`check_values` with the options given as ``{key: click parameter}``."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            raise UsageError(f"{where}: {key} is a table; expected a value")
        param = params.get(key)
        out[key] = value if param is None else convert_value(param, value, f"{where}: {key}",
                                                              ctx)
    return out


def _context(command: Any) -> Any:
    import click

    return click.Context(command)


class _WrongType(Exception):
    pass


_TOML_TYPES = ((bool, "a boolean"), (int, "an integer"), (float, "a float"), (str, "a string"),
               (list, "an array"))


def _toml_type(value: Any) -> str:
    for kind, name in _TOML_TYPES:
        if isinstance(value, kind):
            return name
    return f"a {type(value).__name__}"


def _token(ptype: Any, value: Any, param: Any) -> Any:
    """``value`` as the command line would hand it to ``ptype``: text, or a bool for a flag;
    :class:`_WrongType` when its TOML type is not one that ``ptype`` takes."""
    import click

    if isinstance(ptype, click.types.BoolParamType):  # flags: a TOML bool, never "false"
        if isinstance(value, bool):
            return value
        raise _WrongType
    if isinstance(value, bool) or not isinstance(value, (str, int, float, list)):
        raise _WrongType
    if isinstance(ptype, click.types.IntParamType):  # IntRange too
        if isinstance(value, int):
            return str(value)
        raise _WrongType
    if isinstance(ptype, click.types.FloatParamType):  # FloatRange too
        if isinstance(value, (int, float)):
            return str(value)
        raise _WrongType
    if isinstance(ptype, click.types.StringParamType) and isinstance(value, list):
        # text that the verb parses as comma-separated numbers (B,C,S,H; milestones)
        if (param.callback is not None or "," in (param.metavar or "")) and value and all(
                isinstance(v, (int, float, str)) and not isinstance(v, bool) for v in value):
            return ",".join(map(str, value))
        raise _WrongType
    if isinstance(value, list):
        raise _WrongType
    if isinstance(ptype, (click.Choice, click.Path, click.File, click.types.StringParamType)):
        if isinstance(value, str):
            return value
        if isinstance(ptype, click.types.StringParamType):  # free text: 0.4 is "0.4"
            return str(value)
        raise _WrongType
    return value if isinstance(value, str) else str(value)  # sizes and other parsed text


def _tokens(param: Any, value: Any) -> Any:
    def one(v: Any) -> Any:  # one occurrence of the option
        if param.nargs == 1:
            return _token(param.type, v, param)
        if not isinstance(v, list) or (param.nargs > 0 and len(v) != param.nargs):
            raise _WrongType
        types = getattr(param.type, "types", None) or [param.type] * len(v)
        return tuple(_token(t, x, param) for t, x in zip(types, v, strict=True))

    if param.multiple:
        if not isinstance(value, list):
            raise _WrongType
        return tuple(one(v) for v in value)
    return one(value)


def convert_value(param: Any, value: Any, where: str, ctx: Any) -> Any:
    """One recipe value through ``param``'s click type (see :func:`check_values`)."""
    import click

    shown = f"{value!r:.80}".replace("\n", "\\n")
    try:
        converted = param.type_cast_value(ctx, _tokens(param, value))
    except _WrongType:
        raise UsageError(f"{where} = {shown} is {_toml_type(value)}; expected "
                         f"{_expected(param)}") from None
    except (click.BadParameter, TypeError, ValueError, OverflowError, AttributeError) as exc:
        detail = exc.message if isinstance(exc, click.BadParameter) else str(exc)
        detail = " ".join(str(detail).split())
        raise UsageError(f"{where} = {shown} is not valid ({detail}); "
                         f"expected {_expected(param)}") from None
    if getattr(param, "metavar", None) == "REGEX" and isinstance(converted, str):
        import re

        try:
            re.compile(converted)
        except re.error as exc:
            raise UsageError(f"{where} = {shown} is not a valid regular expression "
                             f"({exc})") from None
    return converted


def _expected(param: Any) -> str:
    """What ``param`` takes, in words: ``integer range x>=1``, ``choice``, ..."""
    import click

    name = getattr(param.type, "name", "value")
    describe = getattr(param.type, "_describe_range", None)  # click's numeric ranges
    if isinstance(param.type, click.types.BoolParamType):
        name = "true or false (a TOML boolean)"
    elif describe is not None:
        name = f"{name} {describe()}"
    elif getattr(param.type, "choices", None):
        name = f"one of {', '.join(map(str, param.type.choices))}"
    elif isinstance(param.type, click.types.StringParamType):
        name = "a string"
    return f"{'a list of ' if param.multiple or param.nargs != 1 else ''}{name}"
