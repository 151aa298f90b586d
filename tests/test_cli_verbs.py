"""One CliRunner test per verb: exit code and output files; recipes; help; clean errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from PIL import Image

from dataprep.cli import cli
from dataprep.io.readers import iter_samples

CORE_VERBS = ("split", "resize", "tencrop", "shard", "run")
PHOTOS = Path(__file__).resolve().parents[1] / "examples" / "photos"


def invoke(*args: str | Path, ok: bool = True):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def image_sizes(out: Path) -> list[tuple[int, int]]:
    return [Image.open(io.BytesIO(s.image)).size for s in iter_samples(out)]


def test_group_help_lists_every_verb():
    result = invoke("--help")
    for verb in CORE_VERBS:
        assert f"  {verb} " in result.output or f"  {verb}\n" in result.output, verb
    for name in cli.commands:  # commands registered by other modules too
        assert name in result.output


@pytest.mark.parametrize("verb", CORE_VERBS)
def test_each_verb_has_help(verb):
    result = invoke(verb, "--help")
    assert "Usage:" in result.output and verb in result.output


def test_version():
    from dataprep import __version__

    assert __version__ in invoke("--version").output


def test_split(image_folder, tmp_path):
    out = tmp_path / "splits"
    result = invoke("split", image_folder, "-o", out, "--ratio", "0.5", "--seed", "1")
    assert sorted(p.name for p in out.iterdir() if p.name != ".dataprep.lock") == [
        "classes.json", "dataprep.json", "train.jsonl", "val.jsonl"]
    assert "ant" in result.output and "train.jsonl" in result.output
    n = sum(len(p.read_text().splitlines()) for p in (out / "train.jsonl", out / "val.jsonl"))
    assert n == 12
    invoke("split", image_folder, "-o", out, "--ratio", "0.6", "--test-ratio", "0.2",
           "--overwrite")
    assert (out / "test.jsonl").is_file()


def test_split_refuses_to_overwrite_another_split(image_folder, tmp_path):
    invoke("split", image_folder, "-o", tmp_path / "s")
    result = invoke("split", image_folder, "-o", tmp_path / "s", "--ratio", "0.5", ok=False)
    assert result.exit_code == 1 and "--overwrite" in result.output
    assert isinstance(result.exception, SystemExit)


def test_resize(image_folder, tmp_path):
    out = tmp_path / "out"
    result = invoke("resize", image_folder, "-o", out, "--short-side", "32", "--jobs", "1",
                    "--max-count", "5")
    assert sorted(p.name for p in out.glob("*.tar")) == [f"train-{i:06d}.tar" for i in range(3)]
    assert (out / "_info.json").is_file() and (out / "dataprep.json").is_file()
    assert "12 records in -> 12 samples out, 0 skipped" in result.output
    sizes = image_sizes(out)
    assert len(sizes) == 12 and all(min(s) == 32 for s in sizes)
    # 99x101 -> 32x32 (101 * 32 / 99 = 32.6); 71x40 -> 56x32
    assert (56, 32) in sizes


def test_resize_no_upscale_keeps_small_images(image_folder, tmp_path):
    out = tmp_path / "out"
    invoke("resize", image_folder, "-o", out, "--short-side", "50", "--jobs", "1",
           "--format", "folder")
    sizes = {p.stem: Image.open(p).size for p in out.rglob("*.jpg")}
    assert sizes["ant__img0"] == (61, 47)  # short side 47 < 50: unchanged
    assert sizes["cat__img0"] == (50, 51)  # 99x101 -> 50x51
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["ant", "bee", "cat"]


def test_tencrop_lmdb(image_folder, tmp_path):
    out = tmp_path / "out"
    invoke("tencrop", image_folder, "-o", out, "--short-side", "32", "--crop", "24",
           "--format", "lmdb", "--jobs", "1")
    assert (out / "train.lmdb" / "data.mdb").is_file()
    samples = list(iter_samples(out))
    assert len(samples) == 120
    assert [s.meta["view"] for s in samples[:10]] == list(range(10))
    assert {s.key for s in samples[:10]} == {f"ant__img0_v{i}" for i in range(10)}
    assert all(Image.open(io.BytesIO(s.image)).size == (24, 24) for s in samples)


def test_tencrop_five(image_folder, tmp_path):
    out = tmp_path / "out"
    invoke("tencrop", image_folder, "-o", out, "--short-side", "32", "--crop", "24", "--five",
           "--jobs", "1")
    samples = list(iter_samples(out))
    assert len(samples) == 60
    assert [s.meta["view_name"] for s in samples[:5]] == [
        "top_left", "top_right", "bottom_left", "bottom_right", "center"]


def test_tencrop_crop_larger_than_short_side_is_a_clean_error(image_folder, tmp_path):
    result = invoke("tencrop", image_folder, "-o", tmp_path / "o", "--short-side", "32",
                    "--crop", "40", ok=False)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "--crop 40 is larger than --short-side 32" in result.output
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


@pytest.mark.parametrize("verb", [["split"], ["tencrop"], ["resize"], ["shard"], ["stats"]])
def test_an_output_below_a_file_is_a_one_line_error(image_folder, tmp_path, verb):
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / ("sub.json" if verb == ["stats"] else "sub")
    result = invoke(*verb, image_folder, "-o", out, ok=False)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    afile = tmp_path / "afile"
    expected = {  # the writing verbs check -o before any work; the others meet the OS's error
        "stats": f"Error: {afile}: is a file, where a folder is needed",
    }.get(verb[0], f"Error: -o {out}: {afile} is a file, not a folder")
    assert expected in result.output
    assert "Traceback" not in result.output and "plan:" not in result.output


def test_every_input_skipped_exits_1_with_reasons_free_of_object_addresses(tmp_path):
    bad = tmp_path / "bad" / "a"
    bad.mkdir(parents=True)
    (bad / "text.jpg").write_text("not an image")
    (bad / "empty.jpg").write_bytes(b"")
    for verb in ("tencrop", "shard"):
        out = tmp_path / verb
        result = invoke(verb, tmp_path / "bad", "-o", out, "--jobs", "1", ok=False)
        assert result.exit_code == 1, result.output
        assert "all 2 inputs were skipped" in result.output
        assert "(no input image used," in result.output and "images/s" not in result.output
        reasons = [json.loads(line)["reason"]
                   for line in (out / "errors.jsonl").read_text().splitlines()]
        assert reasons == [f"{bad / n}: not an image (cannot identify image file)"
                           for n in ("empty.jpg", "text.jpg")]
    result = invoke("shard", tmp_path / "bad", "-o", tmp_path / "re", "--reencode", ok=False)
    assert f"{bad / 'text.jpg'}: not an image" in result.output and "<bytes>" not in result.output
    # the same command again fails again (an empty output is not "complete") ...
    again = invoke("tencrop", tmp_path / "bad", "-o", tmp_path / "tencrop", "--jobs", "1", ok=False)
    assert again.exit_code == 1 and "all 2 inputs were skipped" in again.output
    # ... and once an input is fixed, it gets in without --overwrite
    Image.new("RGB", (300, 260), (90, 120, 30)).save(bad / "text.jpg", "JPEG")
    fixed = invoke("tencrop", tmp_path / "bad", "-o", tmp_path / "tencrop", "--jobs", "1")
    assert "2 records in -> 10 samples out, 1 skipped" in fixed.output


def test_a_recipe_whose_inputs_are_all_skipped_exits_1(tmp_path):
    bad = tmp_path / "bad" / "a"
    bad.mkdir(parents=True)
    for i in range(4):
        (bad / f"{i}.jpg").write_text("not an image")
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "split-80-20-resize-256.toml"
    result = invoke("run", recipe, "--src", tmp_path / "bad", "-o", tmp_path / "o", ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "every input of splits train, val was skipped" in result.output


def test_shard_from_a_manifest(image_folder, tmp_path):
    invoke("split", image_folder, "-o", tmp_path / "s", "--ratio", "0.5")
    out = tmp_path / "shards"
    invoke("shard", tmp_path / "s" / "val.jsonl", "-o", out, "--jobs", "1")
    assert sorted(p.name for p in out.glob("*.tar")) == ["val-000000.tar"]
    val_lines = (tmp_path / "s" / "val.jsonl").read_text().splitlines()
    val = [json.loads(line)["key"] for line in val_lines]
    samples = list(iter_samples(out))
    assert [s.key for s in samples] == val
    # one image field: PNG inputs are stored as RGB JPEG: what Pillow writes for their
    # pixels at --quality 90
    src = {f"{p.parent.name}__{p.stem}": p for p in image_folder.rglob("*.png")}
    for s in samples:
        assert s.ext == "jpg"
        with Image.open(io.BytesIO(s.image)) as got, Image.open(src[s.key]) as want:
            assert got.format == "JPEG" and got.mode == "RGB" and got.size == want.size
            buf = io.BytesIO()
            want.convert("RGB").save(buf, "JPEG", quality=90)
        assert s.image == buf.getvalue()
    # --keep-formats: the original bytes, as they are (PNG stays PNG)
    kept = tmp_path / "kept"
    result = invoke("shard", tmp_path / "s" / "val.jsonl", "-o", kept, "--jobs", "1",
                    "--keep-formats")
    assert "Hugging Face datasets" in result.output
    for s in iter_samples(kept):
        assert s.ext == "png" and s.image == src[s.key].read_bytes()


def test_shard_lmdb_from_webdataset(image_folder, tmp_path):
    invoke("shard", image_folder, "-o", tmp_path / "wds", "--jobs", "1", "--max-count", "4")
    invoke("shard", tmp_path / "wds", "-o", tmp_path / "lmdb", "--format", "lmdb")
    a = [(s.key, s.image, s.cls) for s in iter_samples(tmp_path / "wds")]
    b = [(s.key, s.image, s.cls) for s in iter_samples(tmp_path / "lmdb")]
    assert a == b and len(a) == 12


RECIPE = """
src = "{src}"
out = "{out}"

[split]
ratio = 0.5
seed = 3

[train]
verb = "tencrop"
short_side = 32
crop = 24
format = "webdataset"
max_count = 25

[val]
verb = "resize"
short_side = 28
format = "lmdb"
"""


def test_run_a_recipe(image_folder, tmp_path):
    out = tmp_path / "run"
    recipe = tmp_path / "chain.toml"
    recipe.write_text(RECIPE.format(src=image_folder, out=out))
    result = invoke("run", recipe, "--jobs", "1")
    train = [json.loads(x) for x in (out / "splits" / "train.jsonl").read_text().splitlines()]
    val = [json.loads(x) for x in (out / "splits" / "val.jsonl").read_text().splitlines()]
    assert len(train) + len(val) == 12
    shards = out / "shards"
    tars = sorted(p.name for p in shards.glob("train-*.tar"))
    assert len(tars) == -(-len(train) * 10 // 20)  # two records (20 views) per 25-sample shard
    assert len(list(iter_samples(shards, "train"))) == 10 * len(train)
    assert (shards / "val.lmdb" / "data.mdb").is_file()
    val_samples = list(iter_samples(shards / "val.lmdb"))
    assert sorted(s.key for s in val_samples) == sorted(r["key"] for r in val)
    assert all(min(Image.open(io.BytesIO(s.image)).size) == 28 for s in val_samples)
    assert "[train]" in result.output and "[val]" in result.output


def test_run_overrides_src_and_out(image_folder, tmp_path):
    recipe = tmp_path / "chain.toml"
    recipe.write_text(RECIPE.format(src="nowhere", out="nowhere"))
    invoke("run", recipe, "--src", image_folder, "-o", tmp_path / "elsewhere", "--jobs", "1")
    assert (tmp_path / "elsewhere" / "shards" / "val.lmdb").is_dir()
    assert not Path("nowhere").exists()


def test_run_recipe_with_an_unknown_key_is_an_error(image_folder, tmp_path):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(RECIPE.format(src=image_folder, out=tmp_path / "o")
                      .replace("crop = 24", "crop = 24\ncorp = 3"))
    result = invoke("run", recipe, ok=False)
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)
    assert "corp" in result.output and "unknown key" in result.output


def test_recipe_gives_defaults_and_flags_win(image_folder, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[tencrop]\nshort_side = 40\ncrop = 30\nformat = "folder"\njobs = 1\n')
    out = tmp_path / "out"
    invoke("tencrop", image_folder, "-o", out, "--recipe", recipe, "--crop", "20")
    files = sorted(out.rglob("*.jpg"))
    assert len(files) == 120
    assert {Image.open(p).size for p in files} == {(20, 20)}  # the flag won over crop = 30
    params = json.loads((out / "dataprep.json").read_text())["splits"]["train"]["params"]
    assert params["short_side"] == 40 and params["crop"] == 20  # short_side from the recipe


def test_recipe_table_by_verb_key(image_folder, tmp_path):
    """The bundled recipe style: a [train] table with verb = "resize" serves `dataprep resize`."""
    recipe = tmp_path / "r.toml"
    recipe.write_text('src = "x"\n[train]\nverb = "resize"\nshort_side = 24\n')
    out = tmp_path / "out"
    invoke("resize", image_folder, "-o", out, "--recipe", recipe, "--jobs", "1")
    assert all(min(s) == 24 for s in image_sizes(out))


def test_recipe_unknown_key_is_an_error(image_folder, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text("[tencrop]\nshortside = 40\n")
    result = invoke("tencrop", image_folder, "-o", tmp_path / "out", "--recipe", recipe,
                    ok=False)
    assert result.exit_code == 2
    assert "shortside" in result.output and "unknown key" in result.output
    assert not (tmp_path / "out").exists()


def test_recipe_duplicate_key_is_an_error(image_folder, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text("[tencrop]\ncrop = 40\ncrop = 20\n")
    result = invoke("tencrop", image_folder, "-o", tmp_path / "out", "--recipe", recipe,
                    ok=False)
    assert result.exit_code == 2 and "not valid TOML" in result.output


@pytest.mark.parametrize("name", ["split-80-20-resize-256.toml", "tencrop-256-224-lmdb.toml",
                                  "tencrop-256-224-webdataset.toml"])
def test_bundled_recipes_have_only_known_keys(name):
    from dataprep.jobs.run import TOP_KEYS, VERBS, _library_kwargs
    from dataprep.recipe import load_recipe

    path = Path(__file__).resolve().parent.parent / "recipes" / name
    if not path.exists():
        pytest.skip(f"{name} is not bundled")
    spec = load_recipe(path)
    assert {k for k, v in spec.items() if not isinstance(v, dict)} <= TOP_KEYS
    for table_name, table in spec.items():
        if isinstance(table, dict) and "verb" in table:
            assert table["verb"] in VERBS
            _library_kwargs(table["verb"], {k: v for k, v in table.items() if k != "verb"},
                            table_name)


def test_missing_source_is_a_usage_error(tmp_path):
    result = invoke("resize", tmp_path / "missing", "-o", tmp_path / "out", ok=False)
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)
    assert "does not exist" in result.output


def test_empty_folder_says_what_was_expected(tmp_path):
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    result = invoke("resize", tmp_path / "empty", "-o", tmp_path / "out", ok=False)
    assert result.exit_code == 1 and "Found 0 images" in result.output


def test_python_dash_m_entry_point():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "dataprep", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "tencrop" in proc.stdout


@pytest.mark.parametrize(("text", "size"), [("1GB", 10**9), ("512MiB", 512 * 2**20),
                                            ("1.5MB", 1_500_000), ("100", 100), ("10 kb", 10_000),
                                            ("2e3", 2000), ("1KiB", 1024), (".5KB", 500)])
def test_parse_size(text, size):
    from dataprep.cli_options import parse_size

    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["1.2.3", ".", "ten", "5 parsecs", "-1MB", "1e"])
def test_bad_sizes_are_clean_usage_errors(image_folder, tmp_path, text):
    result = invoke("shard", image_folder, "-o", tmp_path / "o", "--max-bytes", text, ok=False)
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert "is not a size" in result.output


def test_shard_max_bytes_through_the_cli(image_folder, tmp_path):
    out = tmp_path / "o"
    invoke("shard", image_folder, "-o", out, "--max-bytes", "30KB", "--jobs", "1")
    info = json.loads((out / "_info.json").read_text())["splits"]["train"]
    assert info["num_samples"] == 12 and len(info["filenames"]) > 1
    for name, n in zip(info["filenames"], info["shard_lengths"], strict=True):
        assert (out / name).stat().st_size <= 30_000 or n == 1


def test_rerunning_a_recipe_skips_and_a_changed_one_is_refused(image_folder, tmp_path):
    out = tmp_path / "run"
    recipe = tmp_path / "chain.toml"
    recipe.write_text(RECIPE.format(src=image_folder, out=out))
    invoke("run", recipe, "--jobs", "1")
    before = {p.name: p.read_bytes() for p in (out / "shards").glob("*.tar")}
    invoke("run", recipe, "--jobs", "1")  # the same command again: nothing to redo
    assert {p.name: p.read_bytes() for p in (out / "shards").glob("*.tar")} == before
    recipe.write_text(RECIPE.format(src=image_folder, out=out).replace("ratio = 0.5",
                                                                       "ratio = 0.7"))
    result = invoke("run", recipe, "--jobs", "1", ok=False)
    assert result.exit_code == 1 and "--overwrite" in result.output
    invoke("run", recipe, "--jobs", "1", "--overwrite")
    n_train = len((out / "splits" / "train.jsonl").read_text().splitlines())
    assert len(list(iter_samples(out / "shards", "train"))) == 10 * n_train


def test_split_rerun_with_the_same_parameters_is_not_refused(image_folder, tmp_path):
    invoke("split", image_folder, "-o", tmp_path / "s", "--seed", "4")
    before = (tmp_path / "s" / "train.jsonl").read_bytes()
    invoke("split", image_folder, "-o", tmp_path / "s", "--seed", "4")
    assert (tmp_path / "s" / "train.jsonl").read_bytes() == before
    result = invoke("split", image_folder, "-o", tmp_path / "s", "--seed", "5", ok=False)
    assert result.exit_code == 1 and "--overwrite" in result.output


def test_the_rate_counts_the_images_used_not_the_inputs_skipped():
    from dataprep.report import Report

    report = Report(command="resize", out_dir="out", records_in=10, skipped=4, seconds=2.0)
    assert report.images_per_s == 3.0
    assert "(3.0 input images/s, 1 job)" in "\n".join(report.lines())


def test_train_on_a_folder_of_images_says_how_to_make_shards(tmp_path):
    pytest.importorskip("torch")
    result = invoke("train", PHOTOS, "-o", tmp_path / "run", "--epochs", "1", "--device", "cpu",
                    ok=False)
    assert result.exit_code != 0
    assert "no .tar shards in" in result.output and "dataprep resize" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("train", empty, "-o", tmp_path / "run2", "--epochs", "1", "--device", "cpu",
                    ok=False)
    assert "no .tar shards in" in result.output and "dataprep resize" not in result.output


def test_one_flag_name_per_idea_old_names_still_work(tmp_path):
    """tencrop's mirrored views are --hflip as in augment, preview and train (--flip is a
    hidden older name); train's --pca-stats is a hidden older name of --stats; learning-curve
    takes -j as every verb does."""
    help_text = invoke("tencrop", "--help").output
    assert "--hflip / --no-hflip" in help_text and "--flip" not in help_text
    train_help = invoke("train", "--help").output
    assert "--stats FILE" in train_help and "--pca-stats" not in train_help
    assert "-j, --jobs" in invoke("learning-curve", "--help").output
    src = tmp_path / "img" / "cat"
    src.mkdir(parents=True)
    Image.new("RGB", (40, 30), (200, 10, 10)).save(src / "a.png")
    for flag, views in (("--no-hflip", 5), ("--no-flip", 5), ("--hflip", 10)):
        out = tmp_path / flag.strip("-")
        result = invoke("tencrop", tmp_path / "img", "-o", out, "--short-side", "32", "--crop",
                        "24", flag, "-j", "1")
        assert result.exit_code == 0, result.output
        assert f"1 records in -> {views} samples out" in result.output, (flag, result.output)


def test_every_flag_of_every_verb_says_what_it_does():
    """No flag shows only a default in --help: each has words (units and examples where a
    value has them)."""
    silent = {f"{name} {p.opts[0]}" for name, command in cli.commands.items()
              for p in command.params
              if isinstance(p, click.Option) and not p.hidden
              and not (p.help or "").strip()}
    assert not silent, sorted(silent)
    for verb in ("resize", "tencrop", "shard"):
        assert "Examples:" in invoke(verb, "--help").output, verb


def test_every_verb_is_in_the_one_registry_of_verb_names():
    """dataprep.verbs.VERBS names every command (its --help line, and the tables a recipe may
    hold, whichever group runs the verb)."""
    from dataprep.verbs import VERBS

    assert set(cli.commands) == set(VERBS)
    assert all(cli.commands[name].short_help == line for name, line in VERBS.items())
