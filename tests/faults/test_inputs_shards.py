"""Foreign and damaged shards as a source: hostile members and LMDB entries are one-line
errors naming the shard and the key; a sample without an image, or an image that does not
decode whole, is a counted skip; `shard` never stores a truncated image, so `verify` passes
on what it wrote."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import lmdb
import pytest
from click.testing import CliRunner
from PIL import Image
from shardfiles import errors_of, jpeg, write_tar

from dataprep.cli import cli


def run(*args: str):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert "Traceback" not in result.output
    return result






@pytest.mark.parametrize("member, data, words", [
    ("k.cls", b"x", "label b'x' is not a class index"),
    ("k.cls", b"-2", "label b'-2' is not a class index"),
    ("k.cls", b"1000000000", "label 1000000000 is not a class index"),
    ("k.json", b"{not json", "metadata is not JSON"),
    ("k.json", b"[1, 2]", "metadata is a JSON list, not an object"),
    ("k.json", b'{"label": -3}', "label -3 is not a class index"),
    ("k.json", b'{"label": "cat"}', "label 'cat' is not a class index"),
])
def test_hostile_members_are_one_line_errors_naming_shard_and_key(
        tmp_path: Path, member: str, data: bytes, words: str) -> None:
    shard = write_tar(tmp_path / "in" / "train-000000.tar",
                      [("k.jpg", jpeg()), (member, data)])
    result = run("shard", str(tmp_path / "in"), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"Error: {shard}: sample 'k'"), line
    assert words in line


def test_unlabelled_samples_round_trip(tmp_path: Path) -> None:
    """-1 marks a sample without a label; dataprep writes it, so it reads it back."""
    write_tar(tmp_path / "in" / "train-000000.tar", [("a.jpg", jpeg()), ("b.jpg", jpeg()),
                                                     ("b.json", b'{"label": -1}')])
    out = tmp_path / "out"
    assert run("shard", str(tmp_path / "in"), "-o", str(out)).exit_code == 0
    again = run("shard", str(out), "-o", str(tmp_path / "again"))
    assert again.exit_code == 0, again.output
    assert run("verify", str(tmp_path / "again")).exit_code == 0


def test_a_sample_without_an_image_is_a_counted_skip(tmp_path: Path) -> None:
    shard = write_tar(tmp_path / "in" / "train-000000.tar", [
        ("a.jpg", jpeg()), ("a.cls", b"0"),
        ("b.json", b'{"label": 1}'), ("b.cls", b"1"),
        ("c.jpg", jpeg(color=(0, 0, 200))), ("c.cls", b"1")])
    out = tmp_path / "out"
    result = run("shard", str(tmp_path / "in"), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "3 records in -> 2 samples out, 1 skipped" in result.output
    [error] = errors_of(out)
    assert error["key"] == "b"
    assert error["reason"] == (f"{shard}: sample 'b' has no image member (jpg, jpeg, png, "
                               "webp); it is left out")
    assert run("verify", str(out)).exit_code == 0


def test_truncated_jpeg_is_not_stored_and_verify_passes(tmp_path: Path) -> None:
    images = tmp_path / "images" / "cat"
    images.mkdir(parents=True)
    whole = jpeg((320, 240))
    (images / "whole.jpg").write_bytes(whole)
    (images / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    (images / "no_eoi.jpg").write_bytes(whole[:-2])
    out = tmp_path / "out"
    result = run("shard", str(tmp_path / "images"), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "3 records in -> 1 samples out, 2 skipped" in result.output
    reasons = {Path(e["path"]).name: e["reason"] for e in errors_of(out)}
    assert set(reasons) == {"cut.jpg", "no_eoi.jpg"}
    assert all("image file is truncated" in r for r in reasons.values()), reasons
    [shard] = out.glob("*.tar")
    with tarfile.open(shard) as tar:  # the whole one keeps its own bytes
        assert tar.extractfile("cat__whole.jpg").read() == whole
    verified = run("verify", str(out))
    assert verified.exit_code == 0, verified.output


def test_truncated_png_and_jpeg_inside_a_foreign_shard_are_skipped(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (300, 200), (5, 90, 40)).save(buf, "PNG")
    png = buf.getvalue()
    write_tar(tmp_path / "in" / "train-000000.tar", [
        ("a.png", png[: len(png) // 3]), ("a.cls", b"0"),
        ("b.jpg", jpeg((200, 100))[:-300]), ("b.cls", b"0"),
        ("c.jpg", jpeg()), ("c.cls", b"0")])
    out = tmp_path / "out"
    result = run("shard", str(tmp_path / "in"), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(e["key"] for e in errors_of(out)) == ["a", "b"]
    assert run("verify", str(out)).exit_code == 0


def test_random_bytes_lmdb_is_a_one_line_error(tmp_path: Path) -> None:
    env = tmp_path / "train.lmdb"
    env.mkdir()
    (env / "data.mdb").write_bytes(os.urandom(20_000))
    result = run("shard", str(env), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"Error: {env}: not a readable LMDB environment ("), line


@pytest.mark.parametrize("entries, words", [
    ({b"__len__": b"many"}, "__len__ b'many' is not a sample count"),
    ({b"__len__": b"1", b"__classes__": b"{bad"}, "__classes__ is not JSON"),
    ({b"__len__": b"1", b"__classes__": b"[1, 2]"}, "__classes__ is not a list of class names"),
    ({b"__len__": b"1", b"00000000.image": jpeg(), b"00000000.json": b"[]"},
     "sample 0: metadata is a JSON list"),
    ({b"__len__": b"1", b"00000000.image": jpeg(), b"00000000.cls": b"1e9"},
     "sample 0: label b'1e9' is not a class index"),
    ({b"__len__": b"1", b"00000000.image": jpeg(), b"00000000.json": b'{"ext": "../x"}'},
     "sample 0: metadata key '00000000' / ext '../x' is not a key"),
    ({b"__len__": b"2", b"00000000.image": jpeg()}, "sample 1 is missing"),
])
def test_damaged_lmdb_entries_are_one_line_errors(tmp_path: Path, entries: dict,
                                                  words: str) -> None:
    path = tmp_path / "train.lmdb"
    env = lmdb.open(str(path), map_size=1 << 22, subdir=True)
    with env.begin(write=True) as txn:
        for key, value in entries.items():
            txn.put(key, value)
    env.close()
    result = run("shard", str(path), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"Error: {path}"), line
    assert words in line


@pytest.mark.parametrize("info, words", [
    ("{oops", "damaged, not JSON"),
    ('{"splits": []}', "damaged, no 'splits' object"),
    ('{"splits": {"train": {"filenames": ["../../../etc/passwd"]}}}',
     "'filenames' must be a list of shard file names in that folder"),
    ('{"splits": {"train": {"filenames": ["train-000000.tar"], "num_samples": -1}}}',
     "'num_samples' -1 is not a count"),
])
def test_damaged_info_json_is_a_source_error_naming_it(tmp_path: Path, info: str,
                                                       words: str) -> None:
    folder = tmp_path / "in"
    write_tar(folder / "train-000000.tar", [("k.jpg", jpeg()), ("k.cls", b"0")])
    (folder / "_info.json").write_text(info)
    result = run("shard", str(folder), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"Error: {folder / '_info.json'}"), line
    assert words in line


def test_fifo_named_like_a_shard_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    os.mkfifo(folder / "train-000000.tar")
    result = run("shard", str(folder / "train-000000.tar"), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "not a regular file (fifo)" in result.output
