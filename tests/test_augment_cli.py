"""stats, augment and tencrop --color-jitter through the CLI: files, stock-reader round trips,
determinism across --jobs, per-key / per-copy jitter, recipes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from click.testing import CliRunner

from dataprep.cli import cli
from dataprep.io.decode import open_image
from dataprep.io.scan import scan
from dataprep.jobs.stats import compute_stats
from dataprep.ops.augment import Augment
from dataprep.ops.rng import sample_rng

REPO = Path(__file__).resolve().parent.parent
RECIPES = REPO / "recipes"
STATS_KEYS = ("mean", "std", "eigval", "eigvec", "num_images", "num_pixels")


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def fails(*args: str) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code != 0, result.output
    return result.output


def read_wds(out: Path) -> list[dict]:
    urls = sorted(str(p) for p in out.glob("train-*.tar"))
    assert urls, f"no shards in {out}"
    return list(wds.WebDataset(urls, shardshuffle=False).decode("pil"))


def tar_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.tar"))}


# --- stats ---------------------------------------------------------------------------------


def test_stats_cli_writes_what_compute_stats_computes(image_folder, tmp_path):
    out = tmp_path / "s" / "stats.json"
    output = invoke("stats", image_folder, "-o", out, "--jobs", "1")
    written = json.loads(out.read_text())
    expected = compute_stats(image_folder, jobs=1)
    for key in STATS_KEYS:
        assert written[key] == expected[key], key
    assert written["num_images"] == 12
    assert "errors" not in written
    assert "12 images" in output and "mean" in output and str(out) in output
    assert not (out.parent / "errors.jsonl").exists()


def test_stats_split_of_a_split_folder_and_skipped_images(image_folder, tmp_path):
    (image_folder / "ant" / "broken.png").write_bytes(b"not an image")
    splits = tmp_path / "splits"
    invoke("split", image_folder, "-o", splits)
    name = next(n for n in ("train", "val")
                if any(r.key == "ant__broken" for r in scan(splits / f"{n}.jsonl").records))
    out = tmp_path / "stats.json"
    output = invoke("stats", splits, "--split", name, "-o", out, "--jobs", "1")
    records = scan(splits / f"{name}.jsonl").records
    expected = compute_stats(records, jobs=1)
    written = json.loads(out.read_text())
    assert [written[k] for k in STATS_KEYS] == [expected[k] for k in STATS_KEYS]
    assert written["num_images"] == len(records) - 1
    errors = [json.loads(x) for x in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert written["num_skipped"] == len(errors) == 1
    assert errors[0]["path"].endswith("broken.png") and errors[0]["command"] == "stats"
    assert "1 skipped" in output and "errors.jsonl" in output


def test_stats_split_of_an_unsplit_folder_is_refused(image_folder, tmp_path):
    output = fails("stats", image_folder, "--split", "train", "-o", tmp_path / "s.json")
    assert "--split train" in output and "not split" in output


# --- augment -------------------------------------------------------------------------------

AUG_FLAGS = ("--copies", "3", "--crop", "24", "--hflip", "--color-jitter", "0.4,0.4,0.4,0.1",
             "--pca-lighting", "0.1", "--image-format", "png")


def test_augment_round_trips_through_the_stock_reader(image_folder, tmp_path):
    out = tmp_path / "aug"
    invoke("augment", image_folder, "-o", out, *AUG_FLAGS, "--jobs", "1")
    records = scan(image_folder).records
    samples = read_wds(out)
    assert len(samples) == 3 * len(records)
    by_key = {s["__key__"]: s for s in samples}
    for r in records:
        for k in range(3):
            s = by_key[f"{r.key}_a{k}"]
            meta = s["json"]
            assert (meta["source"], meta["copy"], meta["key"]) == (r.key, k, f"{r.key}_a{k}")
            assert set(meta["augment"]) == {"geometry", "hflip", "color_jitter", "pca_lighting"}
            assert s["png"].size == (24, 24) and meta["size"] == [24, 24]
            assert int(s["cls"]) == r.label == meta["label"]
    ledger = json.loads((out / "dataprep.json").read_text())["splits"]["train"]
    assert ledger["command"] == "augment" and ledger["samples_out"] == 3 * len(records)
    assert ledger["params"]["augment"]["color_jitter"] == [0.4, 0.4, 0.4, 0.1]
    assert ledger["params"]["copies"] == 3 and ledger["params"]["seed"] == 0


def test_augment_copy_is_the_pipeline_with_its_own_generator(image_folder, tmp_path):
    """Copy k of key = Augment.apply(decoded image, sample_rng(seed, key, view=k, epoch=0))."""
    out = tmp_path / "aug"
    invoke("augment", image_folder, "-o", out, *AUG_FLAGS, "--seed", "7", "--jobs", "1")
    pipeline = Augment(crop=24, hflip=0.5, color_jitter=(0.4, 0.4, 0.4, 0.1), pca_sigma=0.1)
    record = scan(image_folder).records[4]
    img = open_image(record.path)
    samples = {s["__key__"]: s for s in read_wds(out)}
    for k in range(3):
        expected = pipeline.apply(img, sample_rng(7, record.key, view=k, epoch=0))
        got = samples[f"{record.key}_a{k}"]["png"]
        assert np.array_equal(np.asarray(got), np.asarray(expected)), k


def test_augment_jitter_differs_across_keys_and_copies(image_folder, tmp_path):
    out = tmp_path / "aug"
    invoke("augment", image_folder, "-o", out, "--copies", "2", "--color-jitter", "0.4",
           "--pca-lighting", "0.1", "--image-format", "png", "--jobs", "1")
    samples = read_wds(out)
    params = [json.dumps(s["json"]["augment"], sort_keys=True) for s in samples]
    assert len(set(params)) == len(params)  # every (key, copy) drew its own parameters
    by_key = {s["__key__"]: s for s in samples}
    key = scan(image_folder).records[0].key
    a0, a1 = (np.asarray(by_key[f"{key}_a{k}"]["png"]) for k in (0, 1))
    assert a0.shape == a1.shape and not np.array_equal(a0, a1)


def test_augment_is_byte_identical_across_jobs(image_folder, tmp_path):
    runs = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"j{jobs}"
        invoke("augment", image_folder, "-o", out, "--copies", "2", "--scale-jitter", "30,40",
               "--crop", "24", "--rotate", "10", "--noise", "0.02", "--blur",
               "--color-jitter", "0.3", "--max-count", "7", "--jobs", jobs)
        runs[jobs] = tar_bytes(out)
    assert len(runs["1"]) > 1 and runs["1"] == runs["2"]


def test_augment_resumes_as_complete_and_refuses_other_parameters(image_folder, tmp_path):
    out = tmp_path / "aug"
    invoke("augment", image_folder, "-o", out, "--color-jitter", "0.4", "--jobs", "1")
    before = tar_bytes(out)
    assert "already complete" in invoke("augment", image_folder, "-o", out, "--color-jitter",
                                        "0.4", "--jobs", "1")
    assert tar_bytes(out) == before
    assert "--overwrite" in fails("augment", image_folder, "-o", out, "--color-jitter", "0.4",
                                  "--seed", "1", "--jobs", "1")


@pytest.mark.parametrize("args, words", [
    ((), "nothing to augment"),
    (("--color-jitter", "0.4,x"), "--color-jitter"),
    (("--scale-jitter", "256,480"), "--crop"),
    (("--hflip", "--stats", "stats.json"), "--pca-lighting"),
    (("--crop", "300", "--short-side", "256"), "--crop 300"),
])
def test_augment_usage_errors_name_the_flag(image_folder, tmp_path, args, words):
    output = fails("augment", image_folder, "-o", tmp_path / "aug", *args)
    assert words in output and "Traceback" not in output
    assert not (tmp_path / "aug").exists()


def test_augment_folder_format(image_folder, tmp_path):
    out = tmp_path / "folder"
    invoke("augment", image_folder, "-o", out, "--copies", "2", "--hflip", "--format",
           "folder", "--jobs", "1")
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg"))
    assert len(files) == 24 and "ant/ant__img0_a1.jpg" in files


# --- tencrop with jitter -------------------------------------------------------------------


def test_tencrop_color_jitter_round_trips_and_jitters_each_view(image_folder, tmp_path):
    plain, jittered = tmp_path / "plain", tmp_path / "jit"
    common = ("--short-side", "32", "--crop", "24", "--image-format", "png", "--jobs", "1")
    invoke("tencrop", image_folder, "-o", plain, *common)
    invoke("tencrop", image_folder, "-o", jittered, *common, "--color-jitter", "0.4,0.4,0.4",
           "--pca-lighting", "0.1")
    a, b = read_wds(plain), read_wds(jittered)
    assert [s["__key__"] for s in a] == [s["__key__"] for s in b]
    assert len(b) == 10 * 12
    params = set()
    for x, y in zip(a, b, strict=True):
        # one json schema: the plain views carry the key too, null (no parameters drawn)
        assert y["json"]["view"] == x["json"]["view"] and x["json"]["augment"] is None
        assert set(y["json"]["augment"]) == {"color_jitter", "pca_lighting"}
        assert not np.array_equal(np.asarray(x["png"]), np.asarray(y["png"]))
        params.add(json.dumps(y["json"]["augment"], sort_keys=True))
    assert len(params) == len(b)  # one draw per (key, view)
    ledger = json.loads((jittered / "dataprep.json").read_text())["splits"]["train"]
    assert ledger["params"]["augment"]["pca_sigma"] == 0.1
    plain_params = json.loads((plain / "dataprep.json").read_text())["splits"]["train"]["params"]
    assert "augment" not in plain_params and "seed" not in plain_params


def test_tencrop_view_equals_jitter_of_the_plain_view(image_folder, tmp_path):
    common = ("--short-side", "32", "--crop", "24", "--image-format", "png", "--jobs", "1")
    invoke("tencrop", image_folder, "-o", tmp_path / "p", *common)
    invoke("tencrop", image_folder, "-o", tmp_path / "j", *common, "--color-jitter", "0.4",
           "--seed", "3")
    plain = {s["__key__"]: s for s in read_wds(tmp_path / "p")}
    jit = {s["__key__"]: s for s in read_wds(tmp_path / "j")}
    source = scan(image_folder).records[2].key
    pipeline = Augment(color_jitter=(0.4, 0.4, 0.4, 0.0))
    for i in (0, 7):
        expected = pipeline.apply(plain[f"{source}_v{i}"]["png"], sample_rng(3, source, view=i))
        assert np.array_equal(np.asarray(jit[f"{source}_v{i}"]["png"]), np.asarray(expected))


def test_tencrop_jitter_is_byte_identical_across_jobs(image_folder, tmp_path):
    runs = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"j{jobs}"
        invoke("tencrop", image_folder, "-o", out, "--short-side", "32", "--crop", "24",
               "--color-jitter", "0.4,0.4,0.4,0.1", "--pca-lighting", "0.1", "--max-count",
               "30", "--jobs", jobs)
        runs[jobs] = tar_bytes(out)
    assert len(runs["1"]) > 1 and runs["1"] == runs["2"]


def test_tencrop_lazy_views_refuse_jitter(image_folder, tmp_path):
    output = fails("tencrop", image_folder, "-o", tmp_path / "lazy", "--short-side", "32",
                   "--crop", "24", "--views", "lazy", "--color-jitter", "0.4")
    assert "--views lazy" in output and "materialize" in output
    assert not (tmp_path / "lazy").exists()


# --- recipes -------------------------------------------------------------------------------


def test_alexnet_recipe_loads_and_takes_stats_json(image_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    invoke("stats", image_folder, "-o", "stats.json", "--jobs", "1")
    stats = json.loads((tmp_path / "stats.json").read_text())
    invoke("augment", image_folder, "-o", "aug", "--recipe", RECIPES / "augment-alexnet.toml",
           "--copies", "1", "--jobs", "1")
    params = json.loads((tmp_path / "aug" / "dataprep.json").read_text())["splits"]["train"][
        "params"]
    aug = params["augment"]
    assert aug["color_jitter"] == [0.4, 0.4, 0.4, 0.0] and aug["pca_sigma"] == 0.1
    assert aug["eigval"] == stats["eigval"] and aug["eigvec"] == stats["eigvec"]
    assert aug["crop"] == 224 and aug["hflip"] == 0.5 and params["short_side"] == 256
    assert params["copies"] == 1  # the flag wins over the recipe's 4
    samples = read_wds(tmp_path / "aug")
    assert len(samples) == 12 and samples[0]["jpg"].size == (224, 224)


def test_vgg_recipe_loads(image_folder, tmp_path):
    out = tmp_path / "aug"
    output = invoke("augment", image_folder, "-o", out, "--recipe",
                    RECIPES / "scale-jitter-vgg.toml", "--dry-run")
    assert "about 48 samples" in output  # 12 images x copies = 4 from the recipe
    assert not out.exists()


def test_recipe_with_an_unknown_key_is_refused(image_folder, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text((RECIPES / "scale-jitter-vgg.toml").read_text().replace(
        "hflip = true", "hflip = true\ncolour_jitter = \"0.4\""))
    output = fails("augment", image_folder, "-o", tmp_path / "aug", "--recipe", recipe)
    assert "colour_jitter" in output and "unknown key" in output


def test_every_recipe_value_is_commented():
    for name in ("augment-alexnet.toml", "scale-jitter-vgg.toml"):
        for line in (RECIPES / name).read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                assert "#" in line, f"{name}: {line!r} has no comment"


def test_library_api_is_lazy_and_complete():
    import dataprep

    assert {"augment", "stats", "preview"} <= set(dataprep.__all__)
    assert callable(dataprep.augment) and callable(dataprep.stats)


def test_stats_then_pca_lighting_end_to_end_on_photos(photo_subset, tmp_path):
    """Real photos: stats of the set, then augment with its eigenvectors; copies decode."""
    stats = tmp_path / "stats.json"
    invoke("stats", photo_subset, "-o", stats, "--short-side", "64", "--jobs", "1")
    out = tmp_path / "aug"
    invoke("augment", photo_subset, "-o", out, "--short-side", "64", "--crop", "56",
           "--pca-lighting", "0.1", "--stats", stats, "--jobs", "1")
    samples = read_wds(out)
    assert len(samples) == len(scan(photo_subset).records)
    for s in samples:
        assert s["jpg"].size == (56, 56) and s["json"]["augment"]["pca_lighting"]["alpha"]
