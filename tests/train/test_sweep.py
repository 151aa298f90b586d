"""``dataprep sweep`` and ``dataprep compare``: the grid expands as written, bad specs are refused
before anything trains, a sweep killed mid-run resumes without redoing finished runs, a second
stage starts from its first stage's best.pt, and compare's numbers are the runs' own
metrics.jsonl (class-mean top-1 checked against ``dataprep evaluate``)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_shards, read_metrics
from PIL import Image

from dataprep.cli import cli
from dataprep.errors import UsageError
from dataprep.train.compare import compare, standard_error
from dataprep.train.sweep_spec import load_spec, run_name, safe_run_name, train_argv, train_params

TINY = """
[base]
data = "{data}"
model = "tiny_cnn"
img-size = 32
short_side = 36
batch_size = 8
workers = 0
progress = false
"""


def write_spec(path: Path, text: str, data: Path | str = "shards") -> Path:
    path.write_text(TINY.format(data=data) + text)
    return path


def dataprep(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dataprep", *args], capture_output=True,
                          text=True, timeout=300, **kwargs)


# -- the spec -----------------------------------------------------------------------------------


def test_grid_variants_and_then_expand_as_written(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s.toml", """
epochs = 2
[grid]
optimizer = ["sgd", "adam"]
lr = [0.1, 0.01, 1e-05]
[[variant]]
name = "adam then sgd"
optimizer = "adam"
lr = 0.001
[variant.then]
optimizer = "sgd"
epochs = 3
[[variant]]
name = "wd"
weight-decay = 0.0
""")
    runs = load_spec(spec).runs
    names = [r.name for r in runs]
    assert names == ["optimizer=sgd,lr=0.1", "optimizer=sgd,lr=0.01", "optimizer=sgd,lr=1e-05",
                     "optimizer=adam,lr=0.1", "optimizer=adam,lr=0.01",
                     "optimizer=adam,lr=1e-05", "adam_then_sgd", "adam_then_sgd+then", "wd"]
    grid = runs[4]
    assert grid.flags == {"data": "shards", "model": "tiny_cnn", "img_size": 32,
                          "short_side": 36, "batch_size": 8, "workers": 0, "progress": False,
                          "epochs": 2, "optimizer": "adam", "lr": 0.01}
    assert grid.params["lr"] == 0.01 and grid.params["optimizer"] == "adam"
    assert grid.params["momentum"] == 0.9  # train's own default, from its parser
    first, second = runs[6], runs[7]
    assert first.flags["optimizer"] == "adam" and first.flags["lr"] == 0.001
    assert first.after is None and first.stage == 1
    assert second.after == "adam_then_sgd" and second.stage == 2
    assert second.flags["optimizer"] == "sgd" and second.flags["lr"] == 0.001  # inherited
    assert second.flags["epochs"] == 3 and second.flags["reinit_last"] == 0
    assert second.group == first.group != grid.group
    assert runs[8].flags["weight_decay"] == 0.0 and "optimizer" not in runs[8].flags
    argv = train_argv(grid.flags, train_params())
    assert argv[:1] == ["shards"] and "--no-progress" in argv
    assert argv[argv.index("--lr") + 1] == "0.01"


def test_top_level_then_follows_every_run(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s.toml", """
[grid]
lr = [0.1, 0.01]
[then]
optimizer = "sgd"
lr = 0.001
""")
    runs = load_spec(spec).runs
    assert [(r.name, r.after) for r in runs] == [
        ("lr=0.1", None), ("lr=0.1+then", "lr=0.1"),
        ("lr=0.01", None), ("lr=0.01+then", "lr=0.01")]
    assert all(r.flags["lr"] == 0.001 for r in runs if r.after)


def test_variants_alone_and_base_alone(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s.toml", "[[variant]]\nname = 'a'\nlr = 0.5\n")
    assert [(r.name, r.flags["lr"]) for r in load_spec(spec).runs] == [("a", 0.5)]
    spec = write_spec(tmp_path / "s.toml", "lr = 0.5\n")
    assert [(r.name, r.flags["lr"]) for r in load_spec(spec).runs] == [("base", 0.5)]


def test_names_are_file_safe() -> None:
    name = run_name({"data": "/data/elpv/shards-64/", "hflip": False, "color_jitter": [0.4, 0.1]})
    assert name == "data=shards-64,hflip=false,color_jitter=0.4-0.1"
    assert safe_run_name("../../etc passwd") == "_._.._etc_passwd"
    long = safe_run_name("x" * 500)
    assert len(long) == 120 and "/" not in long


@pytest.mark.parametrize("text, message", [
    ("learning_rate = 0.1\n", "did you mean lr"),
    ("[grid]\noptimiser = ['sgd']\n", "did you mean optimizer"),
    ("[grid]\nlr = 0.1\n", "must be a non-empty list"),
    ("[grid]\nlr = ['0.1']\n", "is a string; expected float"),
    ("[grid]\noptimizer = ['sgd', 'adamm']\n", "adamm"),
    ("resume = true\n", "cannot be set in a sweep"),
    ("[grid]\nimg_size = [32, 64]\n", "--short-side 36 is smaller than --img-size 64"),
    ("[gird]\nlr = [0.1]\n", "did you mean grid"),
    ("[[variant]]\nlr = 0.1\n", "needs a name"),
    ("[then]\npretrained = true\n", "a second stage starts from its first stage's best.pt"),
    ("[grid]\nlr = [0.1\n", "sweep spec"),
    ("[[variant]]\nname = 'a'\n[[variant]]\nname = 'a'\n", "two runs would be named 'a'"),
])
def test_bad_specs_refused_before_any_run(tmp_path: Path, shards: Path, text: str,
                                          message: str) -> None:
    spec = write_spec(tmp_path / "s.toml", text, shards)
    out = tmp_path / "sweep"
    result = CliRunner().invoke(cli, ["sweep", str(spec), "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert not out.exists()  # nothing ran, nothing was written


def test_dry_run_lists_and_estimates_without_training(tmp_path: Path, shards: Path) -> None:
    spec = write_spec(tmp_path / "s.toml", "epochs = 2\n[grid]\nlr = [0.1, 0.01]\n", shards)
    out = tmp_path / "sweep"
    proc = dataprep("sweep", str(spec), "-o", str(out), "--dry-run", "--probe-steps", "2")
    assert proc.returncode == 0, proc.stderr
    assert "1. lr=0.1: 2 epoch(s), ~" in proc.stderr and "2. lr=0.01: 2 epoch(s)" in proc.stderr
    assert "estimated" in proc.stderr and "ms per training image" in proc.stderr
    assert not (out / "runs").exists()


# -- a real sweep: killed, resumed, a second stage, compared -------------------------------------


SWEEP = """
epochs = 3
steps_per_epoch = 4
[grid]
lr = [0.05, 0.01]
[[variant]]
name = "adam-sgd"
optimizer = "adam"
lr = 0.003
epochs = 1
[variant.then]
optimizer = "sgd"
lr = 0.01
epochs = 1
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> dict:
    """One sweep, three calls: ``--max-runs 1``; killed (SIGKILL, process group) once the
    second run has written an epoch; then to the end."""
    tmp = tmp_path_factory.mktemp("sweep")
    data = make_shards(tmp / "shards")
    spec = write_spec(tmp / "spec.toml", SWEEP, data)
    out = tmp / "sweep"
    first = dataprep("sweep", str(spec), "-o", str(out), "--max-runs", "1")
    run1, run2 = out / "runs" / "lr=0.05", out / "runs" / "lr=0.01"
    before = {p.name: p.stat().st_mtime_ns for p in run1.iterdir()}
    proc = subprocess.Popen([sys.executable, "-m", "dataprep", "sweep", str(spec), "-o",
                             str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (run2 / "metrics.jsonl").exists() and read_metrics(run2):
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = read_metrics(run2) if (run2 / "metrics.jsonl").exists() else []
    last = dataprep("sweep", str(spec), "-o", str(out))
    return dict(first=first, last=last, out=out, run1=run1, run2=run2, before=before,
                killed=killed, spec=spec, data=data)


@pytest.mark.slow  # one sweep of five trainings, shared
def test_max_runs_stops_after_the_first(swept: dict) -> None:
    first = swept["first"]
    assert first.returncode == 0, first.stderr
    assert "left for the next call (--max-runs 1)" in first.stderr
    assert "3 run(s) left" in first.stdout


@pytest.mark.slow  # one sweep of five trainings, shared
def test_killed_sweep_resumes_without_redoing_finished_runs(swept: dict) -> None:
    last, run1, run2 = swept["last"], swept["run1"], swept["run2"]
    assert last.returncode == 0, last.stderr
    assert "lr=0.05: finished before, skipped" in last.stderr
    after = {p.name: p.stat().st_mtime_ns for p in run1.iterdir() if p.name in swept["before"]}
    assert after == swept["before"]  # run 1's files untouched by the two later calls
    killed = swept["killed"]
    assert 1 <= len(killed) < 3, "the kill came after the run had finished"
    assert "lr=0.01: resuming" in last.stderr
    history = read_metrics(run2)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[:len(killed)] == killed  # the epochs before the kill were kept, not redone
    ledger = json.loads((swept["out"] / "sweep.json").read_text())
    assert ledger["runs"]["lr=0.01"]["state"] == "finished"
    assert ledger["runs"]["lr=0.01"]["resumed"] is True
    assert all(r["state"] == "finished" for r in ledger["runs"].values())
    assert "--resume" in ledger["runs"]["lr=0.01"]["command"]
    assert "resuming" in (run2 / "train.log").read_text()


@pytest.mark.slow  # one sweep of five trainings, shared
def test_second_stage_starts_from_the_first_stages_best(swept: dict) -> None:
    stage1, stage2 = swept["out"] / "runs" / "adam-sgd", swept["out"] / "runs" / "adam-sgd+then"
    config = json.loads((stage2 / "config.json").read_text())
    assert Path(config["weights"]) == (stage1 / "best.pt").resolve()
    assert config["optimizer"] == "sgd" and config["lr"] == 0.01
    assert json.loads((stage1 / "config.json").read_text())["optimizer"] == "adam"
    assert "classifier classifier kept" in (stage2 / "train.log").read_text()
    assert len(read_metrics(stage2)) == 1


@pytest.mark.slow  # one sweep of five trainings, shared
def test_changed_spec_is_refused_naming_the_flag(swept: dict, tmp_path: Path) -> None:
    spec = tmp_path / "changed.toml"
    spec.write_text(swept["spec"].read_text().replace("lr = 0.003", "lr = 0.002"))
    proc = dataprep("sweep", str(spec), "-o", str(swept["out"]))
    assert proc.returncode == 1
    assert "run adam-sgd in" in proc.stderr and "lr: 0.003 then, 0.002 now" in proc.stderr


@pytest.mark.slow  # one sweep of five trainings, shared
def test_compare_numbers_equal_each_runs_metrics(swept: dict) -> None:
    out = swept["out"]
    with open(out / "compare.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    for row in rows:
        run = Path(row["path"])
        history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        top1 = max(h["val_top1"] for h in history)
        best = next(h for h in history if h["val_top1"] == top1)
        assert float(row["top1"]) == top1 and float(row["top5"]) == best["val_top5"]
        assert float(row["class_mean_top1"]) == best["val_class_top1"]
        assert int(row["best_epoch"]) == best["epoch"] and int(row["epochs_run"]) == len(history)
        assert math.isclose(float(row["wall_seconds"]), sum(h["seconds"] for h in history),
                            abs_tol=1e-3)
        images = sum(h["train_samples"] for h in history)
        seconds = sum(h["train_seconds"] for h in history)
        assert math.isclose(float(row["images_per_s"]), images / seconds, abs_tol=0.1)
        config = json.loads((run / "config.json").read_text())
        assert int(row["parameters"]) == config["resolved"]["parameters"] > 0
    assert [float(r["top1"]) for r in rows] == sorted((float(r["top1"]) for r in rows),
                                                      reverse=True)
    assert {"lr", "optimizer", "epochs", "weights"} <= set(rows[0])  # the varied flags
    assert {r["epochs"] for r in rows} == {"3", "1"}  # the flag, beside epochs_run
    assert "momentum" not in rows[0]  # the same in every run
    with Image.open(out / "compare.png") as png:
        assert png.format == "PNG" and png.size[0] > 800
    assert "| run " in (out / "compare.md").read_text()


@pytest.mark.slow  # one sweep of five trainings, shared
def test_class_mean_top1_matches_evaluate(swept: dict) -> None:
    """The trainer's new val_class_top1 against `dataprep evaluate`'s class-mean top-1 of the
    same checkpoint in center mode (the trainer's validation crop); then compare shows the
    evaluate report as a TTA column."""
    run = swept["run1"]
    history = read_metrics(run)
    best = max(history, key=lambda h: h["val_top1"])
    result = CliRunner().invoke(cli, ["evaluate", str(run / "best.pt"), str(swept["data"]),
                                      "-o", str(run / "eval"), "--tta", "center,flip",
                                      "--no-progress", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    report = json.loads((run / "eval" / "metrics.json").read_text())
    assert report["modes"]["center"]["top1"] == pytest.approx(best["val_top1"])
    assert report["modes"]["center"]["class_mean_top1"] == pytest.approx(best["val_class_top1"])
    lines = compare([run]).lines()
    assert any("| center" in line and "flip" in line for line in lines)


# -- compare on hand-written run folders ----------------------------------------------------------


def fake_run(root: Path, name: str, top1s: list[float], n: int = 100, **config) -> Path:
    """A run folder as `dataprep train` writes one (metrics.jsonl, config.json)."""
    run = root / name
    run.mkdir(parents=True)
    lines = [{"epoch": i + 1, "train_loss": 1.0 / (i + 1), "train_top1": t, "val_loss": 1 - t,
              "val_top1": t, "val_top5": 1.0, "val_class_top1": t - 0.01, "val_samples": n,
              "train_samples": 64, "train_seconds": 2.0, "seconds": 2.5,
              "images_per_s": 32.0, "chance": 0.34} for i, t in enumerate(top1s)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    (run / "config.json").write_text(json.dumps(
        {"epochs": len(top1s), "out": str(run), "lr": 0.1, "momentum": 0.9,
         "resolved": {"parameters": 1234}, **config}))
    return run


def test_ties_are_differences_smaller_than_the_standard_error(tmp_path: Path) -> None:
    se = standard_error(0.8, 100)
    assert se == pytest.approx(0.04)
    runs = [fake_run(tmp_path, "a", [0.5, 0.8], optimizer="sgd"),
            fake_run(tmp_path, "b", [0.77, 0.6], optimizer="adam"),  # 0.03 < se: a tie
            fake_run(tmp_path, "c", [0.75], optimizer="adagrad"),  # 0.05 > se
            fake_run(tmp_path, "d", [0.8], optimizer="rmsprop")]  # equal: a tie
    result = compare(runs)
    assert [(r.name, r.tie) for r in result.rows] == [("a", "best"), ("d", "tie"),
                                                      ("b", "tie"), ("c", "")]
    assert result.standard_error == pytest.approx(0.04) and result.n == 100
    assert result.varied == ["epochs", "optimizer"]
    assert result.rows[2].best_epoch == 1 and result.rows[2].epochs == 2
    assert result.rows[0].images_per_s == pytest.approx(32.0)
    text = "\n".join(result.lines())
    assert "sqrt(p(1-p)/n) = 0.0400" in text


def test_compare_command_writes_its_files(tmp_path: Path) -> None:
    fake_run(tmp_path / "sweep" / "runs", "x", [0.4, 0.6], lr=0.1)
    fake_run(tmp_path / "sweep" / "runs", "y", [0.5], lr=0.01)
    result = CliRunner().invoke(cli, ["compare", str(tmp_path / "sweep"), "-o",
                                      str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[2].startswith("| x ")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "cmp" / "compare.csv").read_text())))
    assert [r["run"] for r in rows] == ["x", "y"] and rows[1]["lr"] == "0.01"
    with Image.open(tmp_path / "cmp" / "compare.png") as png:
        png.verify()
    bad = CliRunner().invoke(cli, ["compare", str(tmp_path)])
    assert bad.exit_code == 1 and "is not a run folder" in bad.output


def test_unknown_spec_table_is_a_usage_error(tmp_path: Path) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text("[base]\ndata = 'x'\n[grids]\nlr = [1.0]\n")
    with pytest.raises(UsageError, match="did you mean grid"):
        load_spec(spec)


def test_shard_takes_every_nth_run_group(tmp_path: Path, shards: Path) -> None:
    spec = write_spec(tmp_path / "s.toml", "[grid]\nlr = [0.1, 0.01, 0.001]\n[then]\nlr = 0.5\n",
                      shards)
    proc = dataprep("sweep", str(spec), "-o", str(tmp_path / "sweep"), "--dry-run",
                    "--probe-steps", "0", "--shard", "2/2")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line[:4].strip().endswith(".")]
    assert [line.split(":")[1].strip() for line in lines] == [
        "another shard's", "another shard's, from lr=0.1/best.pt", "10 epoch(s)",
        "10 epoch(s), from lr=0.01/best.pt", "another shard's",
        "another shard's, from lr=0.001/best.pt"]
    bad = dataprep("sweep", str(spec), "-o", str(tmp_path / "sweep"), "--shard", "3/2")
    assert bad.returncode == 1 and "expected I/N with 1 <= I <= N" in bad.stderr


def test_csv_figure_columns_are_never_flag_names(tmp_path: Path) -> None:
    run = fake_run(tmp_path, "a", [0.5])
    figures = set(compare([run]).table()[0]) - {"run"}
    assert figures and not figures & set(train_params())


@pytest.mark.slow  # one training, stopped
def test_ctrl_c_stops_the_run_and_records_it(tmp_path: Path, shards: Path) -> None:
    spec = write_spec(tmp_path / "s.toml", "epochs = 50\nsteps_per_epoch = 4\n", shards)
    out = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "dataprep", "sweep", str(spec), "-o",
                             str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    run = out / "runs" / "base"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (
            (run / "metrics.jsonl").exists() and read_metrics(run)):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err
    ledger = json.loads((out / "sweep.json").read_text())
    assert ledger["runs"]["base"]["state"] == "interrupted"
    assert 1 <= len(read_metrics(run)) < 50 and (run / "last.pt").exists()


# -- the data a run was scored on; the runs compare shows; -o and the data ------------------------


@pytest.mark.slow  # two one-epoch trainings
def test_rerun_after_the_data_changed_is_refused_and_compare_shows_the_specs_runs(
        tmp_path: Path) -> None:
    data = make_shards(tmp_path / "shy", train_per_class=4, val_per_class=4, max_count=8)
    out = tmp_path / "sweep"
    base = "epochs = 1\n[grid]\nlr = [{}]\n"
    first = dataprep("sweep", str(write_spec(tmp_path / "a.toml", base.format("0.05"), data)),
                     "-o", str(out), "--quiet")
    assert first.returncode == 0, first.stderr
    record = json.loads((out / "runs" / "lr=0.05" / "sweep-run.json").read_text())
    assert record["data_identity"]["val_samples"] == 12 == read_metrics(
        out / "runs" / "lr=0.05")[-1]["val_samples"]
    assert record["data_identity"]["classes"] == ["red", "green", "blue"]
    # a later spec drops lr=0.05: the sweep's table and `compare SWEEP` leave it out
    second = dataprep("sweep", str(write_spec(tmp_path / "b.toml", base.format("0.01"), data)),
                      "-o", str(out), "--quiet")
    assert second.returncode == 0, second.stderr
    with open(out / "compare.csv", newline="") as f:
        assert [r["run"] for r in csv.DictReader(f)] == ["lr=0.01"]
    shown = CliRunner().invoke(cli, ["compare", str(out)])
    assert shown.exit_code == 0, shown.output
    assert "lr=0.01" in shown.output and "lr=0.05" not in shown.output.split("note:")[0]
    assert "1 run folder(s)" in shown.output and "--all" in shown.output
    everything = compare([out], all_runs=True)
    assert sorted(r.name for r in everything.rows) == ["lr=0.01", "lr=0.05"]
    assert not everything.notes  # the same val set: no warning
    # other data in the same folder, one more grid value: the finished runs are refused
    shutil.rmtree(data)
    make_shards(data, train_per_class=4, val_per_class=2, max_count=8)
    third = dataprep("sweep", str(write_spec(tmp_path / "c.toml", base.format("0.01, 0.02"),
                                             data)), "-o", str(out), "--quiet")
    assert third.returncode == 1
    line = third.stderr.strip().splitlines()[-1]
    assert "run lr=0.01 in" in line and "other data" in line, third.stderr
    assert "12 val images then, 6 now" in line and "another -o" in line
    assert not (out / "runs" / "lr=0.02").exists()


def test_compare_marks_runs_on_other_validation_sets_and_ties_within_one(
        tmp_path: Path) -> None:
    five, six = [f"c{i}" for i in range(5)], [f"c{i}" for i in range(6)]
    runs = [fake_run(tmp_path, "big", [0.60], n=164, classes=six),
            fake_run(tmp_path, "small-a", [0.58], n=7, classes=five),  # within 164's se
            fake_run(tmp_path, "small-b", [0.40], n=7, classes=five),
            fake_run(tmp_path, "big-tie", [0.57], n=164, classes=six)]
    result = compare(runs)
    assert [(r.name, r.val_set, r.tie) for r in result.rows] == [
        ("big", "A", "best"), ("small-a", "B", ""), ("big-tie", "A", "tie"),
        ("small-b", "B", "")]
    assert result.n == 164
    text = "\n".join(result.lines())
    assert "val set" in text.splitlines()[0]
    assert "2 different validation sets" in text and "A: 6 classes, 164 val images" in text
    assert "B: 5 classes, 7 val images" in text
    assert [r["val_set"] for r in result.table()] == ["A", "B", "A", "B"]
    cli_run = CliRunner().invoke(cli, ["compare", *map(str, runs)])
    assert cli_run.exit_code == 0 and "warning: the runs were scored on 2" in cli_run.output
    # the same classes and count but other shards (a sweep's data identity): other sets too
    for name, sha in (("big", "aa"), ("big-tie", "bb")):
        (tmp_path / name / "sweep-run.json").write_text(json.dumps(
            {"data_identity": {"sha256": sha, "classes": six, "val_samples": 164}}))
    again = compare(runs)
    assert {r.name: r.tie for r in again.rows}["big-tie"] == ""
    assert len({r.val_set for r in again.rows}) == 3


@pytest.mark.parametrize("where", ["inside", "equal", "holding"])
def test_sweep_out_at_inside_or_holding_its_data_is_refused(tmp_path: Path, shards: Path,
                                                           where: str) -> None:
    out = {"inside": shards / "sw", "equal": shards, "holding": tmp_path}[where]
    spec = write_spec(tmp_path / "s.toml", "epochs = 1\n", shards)
    before = sorted(p.name for p in shards.iterdir())
    result = CliRunner().invoke(cli, ["sweep", str(spec), "-o", str(out)])
    assert result.exit_code != 0
    assert "the run would write where it reads" in result.output, result.output
    assert str(shards) in result.output
    assert sorted(p.name for p in shards.iterdir()) == before  # nothing written there
    verify = CliRunner().invoke(cli, ["verify", str(shards)])
    assert "in no ledger" not in verify.output and str(shards) in verify.output
