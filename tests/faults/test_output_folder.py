"""The output folder as a hostile user meets it: --overwrite never deletes what dataprep did not
write, -o never overlaps the inputs, changed inputs are noticed, the folder sink keeps a ledger,
and verify proves what it says (tampered ledgers, leftovers, damaged files are findings)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from dataprep.cli import cli


def invoke(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


@pytest.fixture
def images(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    for i in range(8):
        folder = root / ("cat" if i % 2 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (48 + i, 40), (30 * i, 90, 200 - 20 * i)).save(folder / f"p{i}.png")
    return root


def resize_args(src: Path, out: Path, *extra: str) -> list[str | Path]:
    return ["resize", src, "-o", out, "--short-side", "32", "--jobs", "1", "--max-count", "3",
            *extra]


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".dataprep.lock"}


# -- --overwrite deletes only what the ledger names -------------------------------------------


def test_overwrite_refuses_a_folder_of_look_alike_files_without_a_ledger(images, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "train-000000.tar").write_bytes(b"my own archive")
    (out / "train-000007.tar.tmp").mkdir()
    (out / "train-000007.tar.tmp" / "keep.txt").write_text("mine")
    before = files(out)
    code, output = invoke(*resize_args(images, out, "--overwrite"))
    assert code == 1
    assert "dataprep did not write there" in output and "train-000000.tar" in output
    assert files(out) == before


def test_overwrite_removes_exactly_the_old_shards_and_keeps_other_files(images, tmp_path):
    out = tmp_path / "out"
    assert invoke(*resize_args(images, out))[0] == 0
    (out / "notes.txt").write_text("keep me")
    old = sorted(p.name for p in out.glob("*.tar"))
    assert len(old) == 3
    code, output = invoke(*resize_args(images, out, "--max-count", "100", "--overwrite"))
    assert code == 0, output
    assert sorted(p.name for p in out.glob("*.tar")) == ["train-000000.tar"]
    assert (out / "notes.txt").read_text() == "keep me"
    assert invoke("verify", out)[0] == 0


def test_a_stranger_among_the_shards_is_refused_by_name_even_with_overwrite(images, tmp_path):
    out = tmp_path / "out"
    assert invoke(*resize_args(images, out))[0] == 0
    (out / "train-000042.tar").write_bytes(b"someone else's")
    before = files(out)
    code, output = invoke(*resize_args(images, out, "--short-side", "30", "--overwrite"))
    assert code == 1 and "train-000042.tar" in output
    assert files(out) == before  # refused before anything was changed, old shards included


@pytest.mark.parametrize("where", ["same", "inside", "holds"])
def test_an_output_overlapping_the_input_is_refused_before_any_work(images, tmp_path, where):
    packed = tmp_path / "packed"
    assert invoke("shard", images, "-o", packed, "--jobs", "1")[0] == 0
    before = files(packed)
    out = {"same": packed, "inside": packed / "sub", "holds": tmp_path}[where]
    code, output = invoke("shard", packed, "-o", out, "--overwrite", "--jobs", "1")
    assert code == 1 and "the run would write where it reads" in output
    assert files(packed) == before
    assert not (packed / "sub").exists()


def test_a_list_file_naming_images_inside_the_output_is_refused(images, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(images, out / "imgs")
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{p} {p.parent.name}\n" for p in sorted(out.rglob("*.png"))))
    code, output = invoke(*resize_args(listing, out))
    assert code == 1 and "holds the input" in output


@pytest.mark.parametrize("name", ["t*", "../x", "a b", "val.1"])
def test_split_names_are_letters_digits_dash_and_underscore(images, tmp_path, name):
    code, output = invoke(*resize_args(images, tmp_path / "out", "--split", name,
                                       "--overwrite"))
    assert code != 0 and "split name" in output
    assert not (tmp_path / "out").exists()


# -- inputs that change -----------------------------------------------------------------------


def test_a_changed_input_is_noticed_and_named(images, tmp_path):
    out = tmp_path / "out"
    assert invoke(*resize_args(images, out))[0] == 0
    Image.new("RGB", (60, 44), (1, 2, 3)).save(images / "cat" / "p1.png")
    code, output = invoke(*resize_args(images, out))
    assert code == 1 and "split 'train' from other inputs" in output and "--overwrite" in output


def test_same_size_and_mtime_needs_the_content_fingerprint(images, tmp_path):
    out = tmp_path / "out"
    assert invoke(*resize_args(images, out, "--fingerprint", "content"))[0] == 0
    target = images / "dog" / "p0.png"
    st = target.stat()
    data = bytearray(target.read_bytes())
    data[-20] ^= 0x01  # inside the last chunk's CRC: same size
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert invoke(*resize_args(images, out))[0] == 1  # stat mode: another identity anyway
    code, output = invoke(*resize_args(images, out, "--fingerprint", "content"))
    assert code == 1 and "files changed since" in output


def test_a_streamed_shard_source_is_identified_by_every_shard(images, tmp_path):
    packed, out = tmp_path / "packed", tmp_path / "out"
    assert invoke("shard", images, "-o", packed, "--max-count", "2", "--jobs", "1")[0] == 0
    assert invoke("shard", packed, "-o", out, "--jobs", "1")[0] == 0
    code, output = invoke("shard", packed, "-o", out, "--jobs", "1")
    assert code == 0 and "already complete" in output
    last = sorted(packed.glob("train-*.tar"))[-1]  # far past the first records
    other = tmp_path / "other"
    assert invoke("shard", images, "-o", other, "--max-count", "2", "--jobs", "1",
                  "--reencode", "--quality", "50")[0] == 0
    shutil.copy(other / last.name, last)
    code, output = invoke("shard", packed, "-o", out, "--jobs", "1")
    assert code == 1 and "from other inputs" in output


# -- the folder sink ---------------------------------------------------------------------------


def test_folder_output_has_a_file_ledger_that_verify_checks(images, tmp_path):
    out = tmp_path / "out"
    assert invoke(*resize_args(images, out, "--format", "folder"))[0] == 0
    ledger = json.loads((out / "dataprep.json").read_text())["splits"]["train"]
    assert sorted(s["name"] for s in ledger["shards"]) == sorted(
        str(p.relative_to(out)) for p in out.glob("*/*") if p.parent.name in ("cat", "dog"))
    assert len(ledger["shards"]) == 8
    assert invoke("verify", out)[0] == 0
    shutil.rmtree(out / "cat")
    code, output = invoke("verify", out)
    assert code == 1 and "missing" in output
    code, output = invoke(*resize_args(images, out, "--format", "folder"))
    assert code == 0 and "already complete" not in output
    assert invoke("verify", out)[0] == 0 and (out / "cat").is_dir()


def test_folder_overwrite_removes_the_old_files_and_refuses_strangers(images, tmp_path):
    out = tmp_path / "out"
    assert invoke(*resize_args(images, out, "--format", "folder"))[0] == 0
    code, _ = invoke(*resize_args(images, out, "--format", "folder", "--short-side", "20",
                                  "--image-format", "jpg", "--overwrite"))
    assert code == 0
    assert not list(out.rglob("*.png")) and len(list(out.rglob("*.jpg"))) == 8
    (out / "cat" / "mine.jpg").write_bytes(b"user data")
    code, output = invoke(*resize_args(images, out, "--format", "folder", "--overwrite"))
    assert code == 1 and "cat/mine.jpg" in output
    assert (out / "cat" / "mine.jpg").read_bytes() == b"user data"


def test_two_classes_that_share_a_folder_name_are_an_error_before_any_work(tmp_path):
    root = tmp_path / "images"
    for i, name in enumerate(("cat dog", "cat_dog")):
        (root / name).mkdir(parents=True)
        Image.new("RGB", (40, 40)).save(root / name / f"{i}.png")
    code, output = invoke(*resize_args(root, tmp_path / "out", "--format", "folder"))
    assert code == 1 and "'cat dog'" in output and "'cat_dog'" in output
    assert not (tmp_path / "out").exists()


# -- verify proves what it says ----------------------------------------------------------------


def _tamper_info(out: Path, change) -> None:
    info = json.loads((out / "_info.json").read_text())
    change(info["splits"]["train"])
    (out / "_info.json").write_text(json.dumps(info))


TAMPERINGS = {
    "a shard listed twice in _info.json": lambda out: _tamper_info(
        out, lambda s: s.update(filenames=s["filenames"] + s["filenames"][:1],
                                shard_lengths=s["shard_lengths"] + s["shard_lengths"][:1])),
    "a wrong num_samples": lambda out: _tamper_info(out, lambda s: s.update(num_samples=99)),
    "a ledger emptied of its splits": lambda out: (out / "dataprep.json").write_text(
        json.dumps({"dataprep_version": "0", "splits": {}})),
    "a leftover temporary ledger": lambda out: (out / ".dataprep.json.tmp").write_text("{"),
    "a damaged ledger": lambda out: (out / "dataprep.json").write_text("{not json"),
    "a ledger that is not a table": lambda out: (out / "dataprep.json").write_text("[1, 2]"),
    "a damaged journal": lambda out: (out / ".journal-train.jsonl").write_bytes(b"\xff\x00x\n1\n"),
    "a shard of no ledger": lambda out: shutil.copy(out / "train-000000.tar",
                                                    out / "val-000000.tar"),
    "a truncated shard": lambda out: (out / "train-000001.tar").write_bytes(
        (out / "train-000001.tar").read_bytes()[:1000]),
    "a stage folder": lambda out: (out / ".dataprep-tmp" / "train").mkdir(parents=True),
}


@pytest.mark.parametrize("what", sorted(TAMPERINGS))
def test_verify_fails_on_tampering_with_a_finding_not_a_traceback(images, tmp_path, what):
    out = tmp_path / "out"
    assert invoke(*resize_args(images, out))[0] == 0
    assert invoke("verify", out)[0] == 0
    TAMPERINGS[what](out)
    code, output = invoke("verify", out)
    assert code == 1, output
    assert "OK:" not in output


def test_a_damaged_ledger_or_journal_is_one_line_on_rerun_and_overwrite_recovers_the_journal(
        images, tmp_path):
    out = tmp_path / "out"
    assert invoke(*resize_args(images, out))[0] == 0
    (out / ".journal-train.jsonl").write_bytes(b"garbage\nmore garbage\n")
    code, output = invoke(*resize_args(images, out))
    assert code == 1 and ".journal-train.jsonl is damaged" in output
    code, output = invoke(*resize_args(images, out, "--overwrite"))
    assert code == 0, output
    assert invoke("verify", out)[0] == 0
    (out / "dataprep.json").write_text("{\"splits\": ")
    for extra in ((), ("--overwrite",)):
        code, output = invoke(*resize_args(images, out, *extra))
        assert code == 1 and "dataprep.json is damaged" in output


# -- links planted in the output folder --------------------------------------------------------


def test_links_planted_in_the_output_folder_are_never_written_through(images, tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "victim.txt").write_text("precious")
    (elsewhere / "train").mkdir()
    (elsewhere / "train" / "keep.bin").write_bytes(b"keep")
    out.mkdir()
    for name in (".dataprep.lock", ".journal-train.jsonl", ".dataprep.json.tmp"):
        (out / name).symlink_to(elsewhere / "victim.txt")
    (out / ".dataprep-tmp").symlink_to(elsewhere)
    code, output = invoke(*resize_args(images, out))
    assert code == 1 and "lock file" in output  # the planted lock is refused, not truncated
    (out / ".dataprep.lock").unlink()
    code, output = invoke(*resize_args(images, out))
    assert (elsewhere / "victim.txt").read_text() == "precious"
    assert (elsewhere / "train" / "keep.bin").read_bytes() == b"keep"
    if code == 0:
        assert invoke("verify", out)[0] == 0


def test_a_class_folder_linked_out_of_the_folder_sink_is_refused(images, tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    out.mkdir()
    (out / "cat").symlink_to(elsewhere)
    code, output = invoke(*resize_args(images, out, "--format", "folder"))
    assert code == 1 and "symbolic link" in output
    assert list(elsewhere.iterdir()) == []


# -- a second battery: what a hostile user found next ------------------------------------------


def test_a_dry_run_changes_nothing_whatever_the_folder_holds(images, tmp_path):
    out = tmp_path / "out"
    assert invoke(*resize_args(images, out))[0] == 0
    before = files(out)
    assert invoke(*resize_args(images, out, "--dry-run", "--overwrite"))[0] == 0
    assert files(out) == before
    with open(out / "train-000001.tar", "ab") as f:
        f.write(b"x")
    before = files(out)
    code, output = invoke(*resize_args(images, out, "--dry-run"))
    assert code == 0 and "nothing was written" in output
    assert files(out) == before
    (out / ".dataprep-tmp" / "train").mkdir(parents=True)
    (out / ".dataprep.json.tmp").write_text("{")
    before = files(out)
    assert invoke(*resize_args(images, out, "--dry-run"))[0] == 0
    assert files(out) == before and (out / ".dataprep-tmp" / "train").is_dir()


def _edit_ledger(out: Path, change) -> None:
    ledger = json.loads((out / "dataprep.json").read_text())
    change(ledger["splits"])
    (out / "dataprep.json").write_text(json.dumps(ledger))


@pytest.mark.parametrize("extra", [(), ("--overwrite",)])
def test_a_ledger_naming_files_dataprep_did_not_write_deletes_none_of_them(images, tmp_path,
                                                                           extra):
    out = tmp_path / "out"
    assert invoke(*resize_args(images, out))[0] == 0
    (out / "notes.txt").write_text("mine")
    (out / "sub").mkdir()
    (out / "sub" / "keep.txt").write_text("mine")
    _edit_ledger(out, lambda splits: splits["train"]["shards"].extend(
        dict(splits["train"]["shards"][0], name=n) for n in ("notes.txt", "sub/keep.txt")))
    code, output = invoke(*resize_args(images, out, "--short-side", "31", *extra))
    assert code == 1 and "the ledger was edited" in output
    assert (out / "notes.txt").read_text() == "mine" and (out / "sub" / "keep.txt").exists()
    assert invoke("verify", out)[0] == 1


def test_a_shard_claimed_by_two_splits_is_not_deleted_for_either(images, tmp_path):
    out = tmp_path / "out"
    assert invoke(*resize_args(images, out))[0] == 0
    assert invoke(*resize_args(images, out, "--split", "val"))[0] == 0
    _edit_ledger(out, lambda splits: splits["val"]["shards"].append(
        splits["train"]["shards"][0]))
    code, output = invoke(*resize_args(images, out, "--split", "val", "--overwrite"))
    assert code == 1 and "the ledger was edited" in output
    assert (out / "train-000000.tar").exists()


def test_shards_missing_from_the_ledger_make_the_split_incomplete(images, tmp_path):
    """The ledger lost its shard list: the split is not complete, and the shards it no longer
    names are not dataprep's to delete; the rerun names them instead."""
    out = tmp_path / "out"
    assert invoke(*resize_args(images, out))[0] == 0
    _edit_ledger(out, lambda splits: splits["train"].update(shards=[]))
    assert invoke("verify", out)[0] == 1
    code, output = invoke(*resize_args(images, out))
    assert code == 1 and "already complete" not in output
    assert "train-000000.tar" in output and (out / "train-000000.tar").exists()


@pytest.mark.parametrize("field,value", [("records_in", "abc"), ("identity", [1]),
                                         ("classes", "abc")])
def test_verify_refuses_a_ledger_with_values_of_the_wrong_type(images, tmp_path, field, value):
    out = tmp_path / "out"
    assert invoke(*resize_args(images, out))[0] == 0
    _edit_ledger(out, lambda splits: splits["train"].update({field: value}))
    code, output = invoke("verify", out)
    assert code == 1 and "malformed" in output


@pytest.mark.parametrize("name", ["a\u0000b", "x" * 300])
def test_impossible_shard_names_in_the_ledger_are_one_line(images, tmp_path, name):
    out = tmp_path / "out"
    assert invoke(*resize_args(images, out))[0] == 0
    _edit_ledger(out, lambda splits: splits["train"]["shards"][0].update(name=name))
    for args in (resize_args(images, out), resize_args(images, out, "--overwrite"),
                 ["verify", out]):
        code, _ = invoke(*args)  # invoke fails on a traceback
        assert code == 1
    assert (out / "train-000000.tar").exists()


def test_a_listed_link_into_the_output_is_refused_and_kept(images, tmp_path):
    out, ext = tmp_path / "out", tmp_path / "ext"
    assert invoke(*resize_args(images, out, "--format", "folder"))[0] == 0
    target = next(out.glob("cat/*"))
    ext.mkdir()
    (ext / "l.png").symlink_to(target)
    (ext / "list.txt").write_text("l.png 0\n")
    code, output = invoke(*resize_args(ext / "list.txt", out, "--format", "folder",
                                       "--overwrite"))
    assert code == 1 and "holds the input" in output
    assert target.exists()


@pytest.mark.parametrize("name", ["dataprep.json", ".journal-train.jsonl", "_info.json",
                                  ".dataprep.lock"])
def test_a_fifo_in_place_of_dataprep_s_own_files_never_blocks(images, tmp_path, name):
    import subprocess
    import sys

    out = tmp_path / "out"
    assert invoke(*resize_args(images, out))[0] == 0
    (out / name).unlink(missing_ok=True)
    os.mkfifo(out / name)
    for args in (["verify", out], resize_args(images, out)):
        run = subprocess.run([sys.executable, "-m", "dataprep", *map(str, args)],
                             capture_output=True, text=True, timeout=60)
        if name == "_info.json" and args[0] == "resize":  # derived: a rerun does not read it
            assert run.returncode == 0 and "Traceback" not in run.stderr
            continue
        assert run.returncode == 1, run.stdout + run.stderr
        assert "Traceback" not in run.stderr and "not a" in run.stdout + run.stderr


@pytest.mark.parametrize("name", ["dataprep.json", "errors.jsonl", "y.lmdb"])
def test_class_names_the_folder_sink_cannot_use_are_refused_before_any_work(tmp_path, name):
    root = tmp_path / "images"
    for cls in (name, "ok"):
        (root / cls).mkdir(parents=True)
        Image.new("RGB", (40, 40)).save(root / cls / f"{len(cls)}.png")
    code, output = invoke(*resize_args(root, tmp_path / "out", "--format", "folder"))
    assert code == 1 and "--format folder cannot use" in output
    assert not (tmp_path / "out").exists()


def test_too_long_split_names_and_keys_are_refused_before_any_work(images, tmp_path):
    code, output = invoke(*resize_args(images, tmp_path / "a", "--split", "s" * 300))
    assert code != 0 and "split name" in output
    long = tmp_path / "long" / "cat"
    long.mkdir(parents=True)
    Image.new("RGB", (40, 40)).save(long / ("n" * 250 + ".png"))
    code, output = invoke(*resize_args(tmp_path / "long", tmp_path / "b", "--format", "folder"))
    assert code == 1 and "too long" in output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_jobs_are_bounded_and_lmdb_io_errors_count_as_a_full_disk():
    import lmdb

    from dataprep.pool import MAX_JOBS_PER_CORE, default_jobs, resolve_jobs
    from dataprep.runner import _disk_full

    assert resolve_jobs(1_000_000) == MAX_JOBS_PER_CORE * default_jobs()
    assert resolve_jobs(1) == 1
    assert _disk_full(lmdb.Error("mdb_txn_commit: Input/output error"))
    assert not _disk_full(lmdb.Error("mdb_get: MDB_NOTFOUND"))


@pytest.mark.parametrize("line", [b'{"checkpoint": {"files": [1]}}',
                                  b'{"checkpoint": {"files": "x"}}',
                                  b'{"finish": {"staged": [{"name": 5}]}}',
                                  b'{"checkpoint": {"writer": 3}}'])
def test_a_journal_line_of_the_wrong_shape_is_damage_that_overwrite_clears(images, tmp_path,
                                                                          line):
    out = tmp_path / "out"
    assert invoke(*resize_args(images, out))[0] == 0
    header = json.dumps({"identity": {}, "format": "webdataset", "entry": {}}).encode()
    (out / ".journal-train.jsonl").write_bytes(header + b"\n" + line + b"\n")
    code, output = invoke(*resize_args(images, out))
    assert code == 1 and "is damaged" in output
    assert invoke("verify", out)[0] == 1
    code, output = invoke(*resize_args(images, out, "--overwrite"))
    assert code == 0, output
    assert invoke("verify", out)[0] == 0


def test_an_errors_file_dataprep_did_not_write_is_refused_and_kept(images, tmp_path):
    """The run rewrites errors.jsonl: someone else's file there is refused, not emptied; the
    file of a run that skipped inputs is dataprep's own, and a rerun takes it."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "errors.jsonl").write_text("my own notes\n")
    code, output = invoke(*resize_args(images, out))
    assert code == 1 and "errors.jsonl" in output
    assert (out / "errors.jsonl").read_text() == "my own notes\n"
    assert sorted(p.name for p in out.iterdir()) == [".dataprep.lock", "errors.jsonl"]
    (images / "cat" / "broken.jpg").write_bytes(b"not an image")
    ours = tmp_path / "ours"
    assert invoke(*resize_args(images, ours))[0] == 0
    listed = (ours / "errors.jsonl").read_text()
    assert "broken" in listed
    assert invoke(*resize_args(images, ours))[0] == 0
    assert (ours / "errors.jsonl").read_text() == listed


def test_stats_errors_beside_the_shards_do_not_block_a_rerun(images, tmp_path):
    (images / "cat" / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "out"
    assert invoke(*resize_args(images, out))[0] == 0
    assert invoke("stats", images, "-o", out / "stats.json", "--jobs", "1")[0] == 0
    lines = (out / "errors.jsonl").read_text().splitlines()
    assert len(lines) == 2 and '"command": "stats"' in lines[1]
    code, output = invoke(*resize_args(images, out))
    assert code == 0, output
    assert (out / "errors.jsonl").read_text().splitlines() == lines


def test_a_refusal_names_what_differs_with_both_values(images, tmp_path):
    """Another command, another parameter, other inputs into the same split: each refusal
    says which, with the old and the new value, and changes nothing."""
    out = tmp_path / "out"
    assert invoke(*resize_args(images, out))[0] == 0
    before = files(out)
    code, output = invoke(*resize_args(images, out, "--quality", "70"))
    assert code == 1 and "quality 90 -> 70" in output and "--overwrite" in output, output
    code, output = invoke("tencrop", images, "-o", out, "--short-side", "24", "--crop", "16",
                          "-j", "1")
    assert code == 1 and "`dataprep resize`, not `dataprep tencrop`" in output, output
    extra = images / "cat" / "extra.png"
    shutil.copy(next((images / "cat").glob("*.png")), extra)
    code, output = invoke(*resize_args(images, out))
    assert code == 1 and "from other inputs" in output and "records then" in output, output
    assert files(out) == before
