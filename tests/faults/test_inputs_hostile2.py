"""Hostile inputs, second round: shard keys that collide once made safe, a looping link in a
class folder, manifests whose class names contradict their labels, and tar / LMDB sources that
used to drop samples silently. Each is a one-line error naming the file, or a counted skip with
its reason; never a traceback, never samples lost without a word."""

from __future__ import annotations

import json
import os
from pathlib import Path

import lmdb
import pytest
from click.testing import CliRunner
from shardfiles import errors_of, jpeg, write_tar

from dataprep.cli import cli
from dataprep.io.readers import iter_samples


def run(*args: str):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def error_line(result) -> str:
    """The one line a failed command prints."""
    assert result.exit_code == 1, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith("Error: "), line
    return line




def write_lmdb(path: Path, length: int, samples: list[dict]) -> Path:
    """A dataprep-layout LMDB: ``__len__`` = ``length``; each sample's ``cls`` (bytes, or
    absent) and ``json`` (a dict)."""
    path.mkdir(parents=True)
    env = lmdb.open(str(path), map_size=1 << 24, subdir=True)
    with env.begin(write=True) as txn:
        txn.put(b"__len__", str(length).encode())
        txn.put(b"__classes__", b'["a", "b"]')
        for i, s in enumerate(samples):
            txn.put(f"{i:08d}.image".encode(), jpeg())
            if "cls" in s:
                txn.put(f"{i:08d}.cls".encode(), s["cls"])
            txn.put(f"{i:08d}.json".encode(), json.dumps(s["json"]).encode())
    env.close()
    return path




def labels_of(out: Path) -> dict[str, int]:
    return {s.key: s.cls for s in iter_samples(out)}


# -- 1. keys that collide once made safe -------------------------------------------------------


def test_tar_keys_that_become_one_key_are_a_source_error(tmp_path: Path) -> None:
    shard = write_tar(tmp_path / "in" / "train-000000.tar", [
        ("p/q.png", jpeg()), ("p/q.cls", b"0"),
        ("p__q.png", jpeg()), ("p__q.cls", b"1")])
    out = tmp_path / "out"
    line = error_line(run("shard", str(tmp_path / "in"), "-o", str(out)))
    assert line.startswith(f"Error: {shard}: sample keys 'p/q' (read before) and 'p__q' both "
                           "become 'p__q' once made safe"), line
    assert "keys must be unique" in line
    assert not list(out.glob("*.tar"))  # nothing half-written that verify would then refuse


def test_the_same_key_in_two_shards_is_a_source_error(tmp_path: Path) -> None:
    write_tar(tmp_path / "in" / "train-000000.tar", [("k.jpg", jpeg()), ("k.cls", b"0")])
    second = write_tar(tmp_path / "in" / "train-000001.tar", [("k.jpg", jpeg()),
                                                              ("k.cls", b"1")])
    line = error_line(run("shard", str(tmp_path / "in"), "-o", str(tmp_path / "out")))
    assert line.startswith(f"Error: {second}: sample key 'k' was read before in this source")


def test_lmdb_samples_sharing_one_json_key_are_a_source_error(tmp_path: Path) -> None:
    env = write_lmdb(tmp_path / "train.lmdb", 3,
                     [{"cls": b"0", "json": {"key": "same", "ext": "jpg"}}] * 3)
    line = error_line(run("shard", str(env), "-o", str(tmp_path / "out")))
    assert line.startswith(f"Error: {env}: sample key 'same' was read before"), line


def test_distinct_keys_still_pass(tmp_path: Path) -> None:
    write_tar(tmp_path / "in" / "train-000000.tar", [
        ("p/q.png", jpeg()), ("p/q.cls", b"0"), ("p/r.png", jpeg()), ("p/r.cls", b"1")])
    out = tmp_path / "out"
    result = run("shard", str(tmp_path / "in"), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "2 records in -> 2 samples out" in result.output
    assert labels_of(out) == {"p__q": 0, "p__r": 1}
    assert run("verify", str(out)).exit_code == 0


# -- 2. a looping link in a class folder --------------------------------------------------------


def test_a_looping_link_skips_itself_not_its_folder(tmp_path: Path) -> None:
    root = tmp_path / "L"
    (root / "a" / "deep").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "good.jpg").write_bytes(jpeg())
    (root / "a" / "deep" / "also.jpg").write_bytes(jpeg())
    (root / "b" / "other.jpg").write_bytes(jpeg())
    os.symlink("self.jpg", root / "a" / "self.jpg")
    os.symlink("loop", root / "loop")  # at the top, where class folders are listed
    out = tmp_path / "out"
    result = run("shard", str(root), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "cannot list this folder" not in result.output
    assert "3 records in -> 3 samples out" in result.output
    reasons = {Path(e["path"]).name: e["reason"] for e in errors_of(out)}
    assert set(reasons) == {"self.jpg", "loop"}, reasons
    assert reasons["self.jpg"] == (f"{root / 'a' / 'self.jpg'}: a symbolic link that loops "
                                   "(Too many levels of symbolic links); remove it or restore "
                                   "what it points to")
    assert "Too many levels of symbolic links" in reasons["loop"]
    assert sorted(labels_of(out)) == ["a__deep__also", "a__good", "b__other"]


# -- 3. manifests whose class names contradict their labels -------------------------------------


def manifest_line(key: str, label: int, class_name: object = None) -> str:
    d: dict = {"key": key, "path": f"/nowhere/{key}.jpg", "label": label}
    if class_name is not None:
        d["class_name"] = class_name
    return json.dumps(d)


@pytest.mark.parametrize("lines, classes, where, words", [
    ([("a", 0, "cat"), ("b", 0, "dog")], None, 2,
     "label 0 is class 'dog' here but 'cat' on line 1; each label needs one class name"),
    ([("a", 0, "cat"), ("b", 1, "cat")], None, 2,
     "class 'cat' has label 1 here but label 0 on line 1; each class needs one label"),
    ([("a", 0, ["cat"])], None, 1, "'class_name' must be a string, got a list (['cat'])"),
    ([("a", 0, "a"), ("b", 1, "b")], {"b": 0, "a": 1}, 1,
     "class_name 'a' of label 0 disagrees with {classes}, which names label 0 'b'"),
])
def test_manifest_class_names_contradicting_labels_are_source_errors(
        tmp_path: Path, lines: list, classes: dict | None, where: int, words: str) -> None:
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(manifest_line(*line) + "\n" for line in lines))
    if classes is not None:
        (tmp_path / "classes.json").write_text(json.dumps(classes))
    line = error_line(run("shard", str(manifest), "-o", str(tmp_path / "out")))
    assert line.startswith(f"Error: {manifest}:{where}: "), line
    assert words.format(classes=tmp_path / "classes.json") in line, line


def test_manifest_class_names_that_agree_are_used(tmp_path: Path) -> None:
    from dataprep.io.scan import scan

    manifest = tmp_path / "train.jsonl"
    manifest.write_text("\n".join([manifest_line("a", 1, "dog"), manifest_line("b", 0, "cat"),
                                   manifest_line("c", 1), manifest_line("d", 3, "eel")]))
    assert scan(manifest).classes == ["cat", "dog", "2", "eel"]
    (tmp_path / "classes.json").write_text('{"cat": 0, "dog": 1, "fox": 2, "eel": 3}')
    assert scan(manifest).classes == ["cat", "dog", "fox", "eel"]


# -- 4. tar and LMDB samples that used to go silently -------------------------------------------


def test_a_dotted_name_is_named_and_a_source_of_no_usable_sample_fails(tmp_path: Path) -> None:
    shard = write_tar(tmp_path / "in" / "train-000000.tar", [("a.b.c.png", jpeg()),
                                                             ("a.b.c.cls", b"0")])
    line = error_line(run("shard", str(tmp_path / "in"), "-o", str(tmp_path / "out")))
    assert line.startswith(f"Error: {tmp_path / 'in'}: none of its 1 samples can be used, "
                           f"e.g. {shard}: sample 'a' has no image member"), line
    assert "member 'a.b.c.png' (and 1 more) was not read" in line
    assert "its field is 'b.c.png'" in line and "rename it 'a_b_c.png'" in line


def test_a_dotted_name_beside_good_samples_is_a_counted_skip(tmp_path: Path) -> None:
    write_tar(tmp_path / "in" / "train-000000.tar", [
        ("a.b.c.png", jpeg()), ("a.b.c.cls", b"0"),
        ("k.jpg", jpeg()), ("k.cls", b"1"), ("k.seg.png", jpeg())])  # an extra field: fine
    out = tmp_path / "out"
    result = run("shard", str(tmp_path / "in"), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "2 records in -> 1 samples out, 1 skipped" in result.output
    [error] = errors_of(out)
    assert error["key"] == "a" and "'a.b.c.png'" in error["reason"]
    assert labels_of(out) == {"k": 1}


def test_an_all_zero_tar_is_an_error_not_an_empty_success(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "train-000000.tar").write_bytes(b"\0" * 10240)
    out = tmp_path / "out"
    line = error_line(run("shard", str(folder), "-o", str(out)))
    assert line == f"Error: {folder}: holds no samples (its tar shards are empty); expected " \
                   "samples of an image and a label"
    assert not list(out.glob("*.tar"))


@pytest.mark.parametrize("members, words", [
    ([("k1.jpg", jpeg()), ("k1.cls", b"0"), ("k1.cls", b"1")],
     "sample 'k1' has field 'cls' twice"),
    ([("k1.jpg", jpeg()), ("k1.JPG", jpeg()), ("k1.cls", b"0")],
     "sample 'k1' has field 'jpg' twice"),
    ([("k1.png", jpeg()), ("k1.jpg", jpeg()), ("k1.webp", jpeg()), ("k1.cls", b"0")],
     "sample 'k1' has 3 image members (jpg, png, webp); expected one image per sample"),
])
def test_repeated_members_of_one_sample_are_shard_errors(tmp_path: Path, members: list,
                                                         words: str) -> None:
    shard = write_tar(tmp_path / "in" / "train-000000.tar", members)
    line = error_line(run("shard", str(tmp_path / "in"), "-o", str(tmp_path / "out")))
    assert line.startswith(f"Error: {shard}: {words}"), line


def test_lmdb_entries_beyond_its_len_are_a_shard_error(tmp_path: Path) -> None:
    env = write_lmdb(tmp_path / "train.lmdb", 2, [
        {"cls": b"0", "json": {"key": f"k{i}", "ext": "jpg"}} for i in range(6)])
    line = error_line(run("shard", str(env), "-o", str(tmp_path / "out")))
    assert line == (f"Error: {env}: __len__ says 2 samples but sample 2 (00000002.image) "
                    "exists too; the LMDB is damaged or its __len__ is wrong: fix __len__ to "
                    "the number of samples")


def test_tar_sample_without_cls_uses_its_json_label_else_is_a_counted_skip(
        tmp_path: Path) -> None:
    shard = write_tar(tmp_path / "in" / "train-000000.tar", [
        ("a.jpg", jpeg()), ("a.cls", b"0"),
        ("b.jpg", jpeg()),  # no label at all
        ("c.jpg", jpeg()), ("c.json", b'{"label": 1}'),
        ("d.jpg", jpeg()), ("d.cls", b"-1")])  # dataprep's own "unlabelled"
    out = tmp_path / "out"
    result = run("shard", str(tmp_path / "in"), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "4 records in -> 3 samples out, 1 skipped" in result.output
    [error] = errors_of(out)
    assert error["key"] == "b"
    assert error["reason"] == (f"{shard}: sample 'b' has no label (no .cls member and no "
                               "'label' in its .json); it is left out")
    assert labels_of(out) == {"a": 0, "c": 1, "d": -1}
    again = tmp_path / "again"  # -1 round-trips: dataprep reads back what it wrote
    result = run("shard", str(out), "-o", str(again))
    assert result.exit_code == 0, result.output
    assert "3 records in -> 3 samples out" in result.output
    assert labels_of(again) == {"a": 0, "c": 1, "d": -1}
    assert run("verify", str(again)).exit_code == 0


def test_lmdb_sample_without_cls_uses_its_json_label_else_is_a_counted_skip(
        tmp_path: Path) -> None:
    env = write_lmdb(tmp_path / "train.lmdb", 4, [
        {"cls": b"0", "json": {"key": "k0", "ext": "jpg"}},
        {"cls": b"-1", "json": {"key": "k1", "ext": "jpg"}},
        {"json": {"key": "k2", "ext": "jpg", "label": 1}},
        {"json": {"key": "k3", "ext": "jpg"}}])
    out = tmp_path / "out"
    result = run("shard", str(env), "-o", str(out), "--format", "lmdb")
    assert result.exit_code == 0, result.output
    assert "4 records in -> 3 samples out, 1 skipped" in result.output
    [error] = errors_of(out)
    assert error["key"] == "k3"
    assert error["reason"] == (f"{env}: sample 3 ('k3') has no label (no 00000003.cls entry "
                               "and no 'label' in its json); it is left out")
    assert labels_of(out) == {"k0": 0, "k1": -1, "k2": 1}
    again = tmp_path / "again"
    result = run("shard", str(out), "-o", str(again))
    assert result.exit_code == 0, result.output
    assert labels_of(again) == {"k0": 0, "k1": -1, "k2": 1}


def test_an_lmdb_of_only_unlabelled_samples_fails(tmp_path: Path) -> None:
    env = write_lmdb(tmp_path / "train.lmdb", 2, [
        {"json": {"key": f"k{i}", "ext": "jpg"}} for i in range(2)])
    line = error_line(run("shard", str(env), "-o", str(tmp_path / "out")))
    assert line.startswith(f"Error: {env}: none of its 2 samples can be used, e.g. {env}: "
                           "sample 0 ('k0') has no label"), line
