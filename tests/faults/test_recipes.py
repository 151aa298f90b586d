"""Hostile recipes through the real CLI: every value is converted by its flag's click type
(``"false"`` is no boolean, ``"32"`` no integer), a wrong one is a one-line error naming the
recipe, the table and the key, and nothing is written before every table has been checked."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from dataprep.cli import cli
from dataprep.io.readers import iter_samples

TOP = {"jobs": "1"}
TABLES = {
    "split": {"ratio": "0.5", "seed": "3"},
    "train": {"verb": '"resize"', "short_side": "20"},
    "val": {"verb": '"shard"'},
}


def write_recipe(path: Path, src: Path, out: Path, top: dict | None = None,
                 tables: dict | None = None, extra: str = "") -> Path:
    """A run recipe: ``top`` and ``tables`` ({table: {key: TOML text}}) replace the defaults'
    entries; a value of None drops the key."""
    lines = []
    merged_top = {"src": json.dumps(str(src)), "out": json.dumps(str(out)), **TOP, **(top or {})}
    lines += [f"{k} = {v}" for k, v in merged_top.items() if v is not None]
    merged = {name: dict(table) for name, table in TABLES.items()}
    for name, table in (tables or {}).items():
        merged.setdefault(name, {}).update(table)
    for name, table in merged.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {v}" for k, v in table.items() if v is not None]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_refused(result, *names: str, code: tuple[int, ...] = (1, 2)) -> str:
    """Exit 1 or 2 with one ``Error:`` line that names each of ``names``; no traceback."""
    assert result.exit_code in code, result.output + repr(result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    for name in names:
        assert name in errors[0], (name, errors[0])
    return errors[0]


def image_sizes(out: Path, split: str | None = None) -> list[tuple[int, int]]:
    return [Image.open(io.BytesIO(s.image)).size for s in iter_samples(out, split)]


# --- A: strings are no booleans ---------------------------------------------------------------

def test_top_level_overwrite_false_string_keeps_old_output(image_folder, tmp_path):
    out = tmp_path / "o"
    write_recipe(tmp_path / "r.toml", image_folder, out)
    assert invoke("run", tmp_path / "r.toml").exit_code == 0
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    changed = {"train": {"short_side": "24"}}
    for value in ('"false"', '"no"'):
        write_recipe(tmp_path / "r2.toml", image_folder, out, {"overwrite": value}, changed)
        line = assert_refused(invoke("run", tmp_path / "r2.toml"), "r2.toml", "overwrite")
        assert "(top level)" in line and "boolean" in line
        assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before
    # a TOML false is no overwrite: the changed command is refused, the old output stays
    write_recipe(tmp_path / "r3.toml", image_folder, out, {"overwrite": "false"}, changed)
    assert invoke("run", tmp_path / "r3.toml").exit_code != 0
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before
    assert {min(s) for s in image_sizes(out / "shards", "train")} == {20}


def test_upscale_false_string_is_refused_and_false_does_not_upscale(image_folder, tmp_path):
    out = tmp_path / "o"
    big = {"train": {"short_side": "200"}}
    write_recipe(tmp_path / "r.toml", image_folder, out, None,
                 {"train": {**big["train"], "upscale": '"false"'}})
    assert_refused(invoke("run", tmp_path / "r.toml"), "[train]", "upscale")
    assert not out.exists()
    write_recipe(tmp_path / "r.toml", image_folder, out, None,
                 {"train": {**big["train"], "upscale": "false"}})
    assert invoke("run", tmp_path / "r.toml").exit_code == 0
    sizes = image_sizes(out / "shards", "train")
    assert sizes and all(max(s) < 200 for s in sizes)  # as they were: none enlarged


def test_reencode_no_string_is_refused_and_false_keeps_the_bytes(image_folder, tmp_path):
    out = tmp_path / "o"
    write_recipe(tmp_path / "r.toml", image_folder, out, None, {"val": {"reencode": '"no"'}})
    assert_refused(invoke("run", tmp_path / "r.toml"), "[val]", "reencode")
    assert not out.exists()
    # the PNG inputs keep their bytes with keep_formats (else they are stored as RGB JPEG)
    write_recipe(tmp_path / "r.toml", image_folder, out, None,
                 {"val": {"reencode": "false", "keep_formats": "true"}})
    assert invoke("run", tmp_path / "r.toml").exit_code == 0
    val = [json.loads(x) for x in (out / "splits" / "val.jsonl").read_text().splitlines()]
    stored = {s.key: s.image for s in iter_samples(out / "shards", "val")}
    assert stored and {r["key"]: Path(r["path"]).read_bytes() for r in val} == stored
    params = json.loads((out / "shards" / "dataprep.json").read_text())["splits"]["val"]
    assert params["params"]["reencode"] is False


@pytest.mark.parametrize("line", ['upscale = "false"', 'five = "no"', "flip = 0"])
def test_single_verb_recipe_refuses_non_boolean_flags(image_folder, tmp_path, line):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"[tencrop]\n{line}\n")
    result = invoke("tencrop", image_folder, "-o", tmp_path / "out", "--recipe", recipe)
    assert_refused(result, "r.toml", line.split()[0], code=(2,))
    assert not (tmp_path / "out").exists()


def test_single_verb_recipe_upscale_false_does_not_upscale(image_folder, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text("[resize]\nupscale = false\nshort_side = 200\njobs = 1\n")
    out = tmp_path / "out"
    assert invoke("resize", image_folder, "-o", out, "--recipe", recipe).exit_code == 0
    assert all(max(s) < 200 for s in image_sizes(out))
    recipe.write_text("[resize]\nupscale = true\nshort_side = 80\njobs = 1\n")
    out2 = tmp_path / "out2"
    assert invoke("resize", image_folder, "-o", out2, "--recipe", recipe).exit_code == 0
    assert {min(s) for s in image_sizes(out2)} == {80}  # a TOML true still upscales


@pytest.mark.parametrize("line", ['short_side = "32"', "short_side = true", "max_bytes = -5",
                                  "crop = 1e400", 'max_disk = "lots"', 'format = "zip"'])
def test_single_verb_recipe_refuses_wrong_types(image_folder, tmp_path, line):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"[tencrop]\n{line}\n")
    result = invoke("tencrop", image_folder, "-o", tmp_path / "out", "--recipe", recipe)
    assert_refused(result, "[tencrop]", line.split()[0], code=(2,))
    assert not (tmp_path / "out").exists()


# --- B: wrong types anywhere in a run recipe ---------------------------------------------------

TOP_CASES = [
    ("jobs", '"x"'), ("jobs", "1e400"), ("jobs", "true"), ("on_error", '"explode"'),
    ("out", "5"), ("out", '["a"]'), ("seed", '"abc"'), ("seed", "[1]"),
    ("seed", "1e400"), ("root", "false"),
]


@pytest.mark.parametrize(("key", "value"), TOP_CASES)
def test_run_top_level_wrong_type(image_folder, tmp_path, key, value):
    out = tmp_path / "o"
    write_recipe(tmp_path / "r.toml", image_folder, out, {key: value})
    line = assert_refused(invoke("run", tmp_path / "r.toml"), "r.toml", "(top level)", key)
    assert line.count("\n") == 0
    assert not out.exists() and not Path("a").exists()


TABLE_CASES = [
    ("train", "short_side", '"32"'), ("train", "short_side", "true"),
    ("train", "short_side", "32.0"), ("train", "max_bytes", "-5"),
    ("train", "max_bytes", '"-5"'), ("train", "max_disk", '"1 lot"'),
    ("train", "format", '"zip"'), ("train", "log", "5"), ("train", "overwrite", '"yes"'),
    ("val", "shuffle", '"no"'), ("val", "quality", "101"), ("val", "max_count", "0"),
    ("split", "ratio", '"0.5"'), ("split", "seed", '"1"'), ("split", "group_by", '"("'),
    ("split", "group_by", "[5]"), ("split", "balance", '"some"'),
    ("split", "per_class_limit", "2.5"),
]


@pytest.mark.parametrize(("table", "key", "value"), TABLE_CASES)
def test_run_table_wrong_type(image_folder, tmp_path, table, key, value):
    out = tmp_path / "o"
    write_recipe(tmp_path / "r.toml", image_folder, out, None, {table: {key: value}})
    assert_refused(invoke("run", tmp_path / "r.toml"), "r.toml", f"[{table}]", key)
    assert not out.exists()  # checked before the split is written


def test_run_max_disk_is_parsed_as_a_size(image_folder, tmp_path):
    out = tmp_path / "o"
    write_recipe(tmp_path / "r.toml", image_folder, out, None,
                 {"train": {"max_disk": '"1KB"'}})
    line = assert_refused(invoke("run", tmp_path / "r.toml"), "max-disk", code=(1,))
    assert "1.0 KB" in line
    assert not list(out.rglob("train-*.tar"))  # refused before writing a shard
    write_recipe(tmp_path / "r.toml", image_folder, out, None,
                 {"train": {"max_disk": '"1GB"', "max_bytes": '"1MB"'}})
    assert invoke("run", tmp_path / "r.toml").exit_code == 0


@pytest.mark.parametrize("name", ["trian", "tset", "Train"])
def test_run_unknown_table_names_it_and_the_known_ones(image_folder, tmp_path, name):
    out = tmp_path / "o"
    write_recipe(tmp_path / "r.toml", image_folder, out,
                 extra=f'[{name}]\nverb = "resize"\n')
    line = assert_refused(invoke("run", tmp_path / "r.toml"), "r.toml", f"[{name}]")
    for known in ("[split]", "[train]", "[val]"):
        assert known in line
    assert not out.exists()


def test_run_test_table_needs_a_test_split(image_folder, tmp_path):
    out = tmp_path / "o"
    write_recipe(tmp_path / "r.toml", image_folder, out, extra='[test]\nverb = "shard"\n')
    assert_refused(invoke("run", tmp_path / "r.toml"), "[test]", "test_ratio")
    assert not out.exists()
    write_recipe(tmp_path / "r.toml", image_folder, out,
                 tables={"split": {"ratio": "0.4", "test_ratio": "0.3"}},
                 extra='[test]\nverb = "shard"\n')
    assert invoke("run", tmp_path / "r.toml").exit_code == 0
    assert list(iter_samples(out / "shards", "test"))


def test_run_typo_in_a_later_table_is_found_before_anything_is_written(image_folder, tmp_path):
    out = tmp_path / "o"
    write_recipe(tmp_path / "r.toml", image_folder, out, None, {"val": {"reencdoe": "true"}})
    assert_refused(invoke("run", tmp_path / "r.toml"), "[val]", "reencdoe", "unknown key")
    assert not out.exists()


@pytest.mark.parametrize("verb", ['"crop"', "5", None])
def test_run_table_with_a_bad_verb(image_folder, tmp_path, verb):
    out = tmp_path / "o"
    write_recipe(tmp_path / "r.toml", image_folder, out, None, {"val": {"verb": verb}})
    assert_refused(invoke("run", tmp_path / "r.toml"), "[val]", "verb")
    assert not out.exists()


def test_run_well_typed_recipe_still_runs(image_folder, tmp_path):
    """Sizes as text or integers, floats for float flags given as integers, arrays for
    comma-separated options."""
    out = tmp_path / "o"
    write_recipe(tmp_path / "r.toml", image_folder, out, {"seed": "2", "on_error": '"raise"'},
                 {"train": {"verb": '"tencrop"', "short_side": "24", "crop": "16",
                            "five": "true", "max_bytes": "100000", "max_aspect": "10",
                            "color_jitter": "[0.2, 0.2, 0.2, 0]"},
                  "val": {"max_bytes": '"1MB"', "reencode": "true", "quality": "80"}})
    result = invoke("run", tmp_path / "r.toml")
    assert result.exit_code == 0, result.output
    assert {s for s in image_sizes(out / "shards", "train")} == {(16, 16)}


# --- every table and key of the whole recipe, before any work, with a suggestion ---------------

def test_run_misspelled_table_suggests_the_known_one(image_folder, tmp_path):
    out = tmp_path / "o"
    write_recipe(tmp_path / "r.toml", image_folder, out, extra='[trian]\nverb = "resize"\n')
    line = assert_refused(invoke("run", tmp_path / "r.toml"), "[trian]")
    assert "did you mean [train]?" in line
    assert not out.exists()


def test_run_misspelled_key_in_train_suggests_the_flag_before_the_split(image_folder, tmp_path):
    out = tmp_path / "o"
    write_recipe(tmp_path / "r.toml", image_folder, out, None,
                 {"train": {"short_side": None, "shortside": "20"}})
    line = assert_refused(invoke("run", tmp_path / "r.toml"), "[train]", "shortside")
    assert "did you mean short_side?" in line
    assert not out.exists()  # not even the split


@pytest.mark.parametrize("verb,table", [("tencrop", "tencorp"), ("resize", "resise"),
                                        ("shard", "shrad")])
def test_verb_recipe_misspelled_table_is_refused(image_folder, tmp_path, verb, table):
    """``[tencorp]`` with ``five = true`` once wrote ten views silently."""
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"[{table}]\nfive = true\n")
    result = invoke(verb, image_folder, "-o", tmp_path / "out", "--recipe", recipe)
    line = assert_refused(result, "r.toml", f"[{table}]", code=(2,))
    assert f"did you mean [{verb}]?" in line
    assert not (tmp_path / "out").exists()


def test_verb_recipe_misspelled_key_suggests_the_flag(image_folder, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text("[tencrop]\nshort_sid = 40\n")
    result = invoke("tencrop", image_folder, "-o", tmp_path / "out", "--recipe", recipe)
    line = assert_refused(result, "short_sid", code=(2,))
    assert "did you mean short_side?" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("verb", ["tencrop", "resize", "shard", "split"])
def test_verb_recipe_refuses_internal_parameters(image_folder, tmp_path, verb):
    """Only the verb's command-line option names are recipe keys: ``log`` (the library's
    progress callback) is none."""
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[{verb}]\nlog = "x"\n')
    result = invoke(verb, image_folder, "-o", tmp_path / "out", "--recipe", recipe)
    assert_refused(result, "unknown key log", code=(2,))
    assert not (tmp_path / "out").exists()


def test_a_table_with_a_verb_key_is_a_known_table(image_folder, tmp_path):
    """A run recipe's ``[val]`` (verb = "shard") configures ``shard --recipe`` as documented."""
    recipe = tmp_path / "r.toml"
    recipe.write_text('[val]\nverb = "shard"\nmax_count = 5\n[split]\nratio = 0.5\n')
    out = tmp_path / "out"
    result = invoke("shard", image_folder, "-o", out, "--recipe", recipe, "-j", "1")
    assert result.exit_code == 0, result.output
    assert len(list(out.glob("*.tar"))) == 3  # 12 images, 5 per shard


def test_shipped_recipes_have_known_tables():
    from dataprep.recipe import check_tables, load_recipe

    verbs = [name.replace("-", "_") for name in cli.commands] + list(cli.commands)
    recipes = sorted((Path(__file__).parents[2] / "recipes").glob("*.toml"))
    assert recipes
    for path in recipes:
        if path.name.startswith("sweep-"):  # a sweep spec, read by `dataprep sweep`
            continue
        check_tables(load_recipe(path), str(path), verbs)


def test_run_dry_run_writes_nothing_and_prints_each_plan(image_folder, tmp_path):
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.toml", image_folder, out)
    dry = invoke("run", recipe, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert not out.exists()  # neither the manifests nor the shards
    plans = [line for line in dry.output.splitlines() if "plan:" in line]
    assert [p.split()[0] for p in plans] == ["[train]", "[val]"]  # resize, then shard
    assert dry.output.count("dry run: nothing was written") == 2
    assert "all" in dry.output  # the split's table
    done = invoke("run", recipe)
    assert done.exit_code == 0, done.output
    assert (out / "splits" / "train.jsonl").exists() and list(out.rglob("*.tar"))


def test_run_dry_run_refuses_what_the_run_would_refuse(image_folder, tmp_path):
    out = tmp_path / "out"
    assert invoke("run", write_recipe(tmp_path / "a.toml", image_folder, out)).exit_code == 0
    other = write_recipe(tmp_path / "b.toml", image_folder, out,
                         tables={"split": {"ratio": "0.7"}})
    dry = invoke("run", other, "--dry-run")
    assert dry.exit_code == 1 and "already holds a split" in dry.output, dry.output
    again = invoke("run", write_recipe(tmp_path / "a.toml", image_folder, out), "--dry-run")
    assert again.exit_code == 0, again.output  # the same split is no conflict
