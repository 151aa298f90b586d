"""Keys and labels from every source obey one rule: keys carry no dots or slashes (so the
stock WebDataset reader groups every sample and no member name leaves a folder), labels are
ints in 0..MAX_CLASSES-1. Anything else is a one-line error naming the file and line."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from dataprep.cli import cli
from dataprep.errors import SourceError
from dataprep.io.labels import MAX_CLASSES
from dataprep.io.manifest_source import scan_manifest
from dataprep.io.scan import scan_list


def run(*args: str):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def manifest(folder: Path, records: list[dict], classes: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    if classes is not None:
        (folder / "classes.json").write_text(json.dumps(classes))
    return path


@pytest.fixture
def three_images(tmp_path: Path, make_folder) -> list[str]:
    root = make_folder(tmp_path / "images", {"a": [(40, 30), (30, 40), (36, 36)]})
    return [str(p) for p in sorted((root / "a").iterdir())]


def test_manifest_keys_with_dots_and_dotdots_survive_the_stock_reader(
        tmp_path: Path, three_images: list[str]) -> None:
    import webdataset as wds

    keys = ["x.y.z", "../../x", "/abs/y"]
    path = manifest(tmp_path / "m", [
        {"key": k, "path": p, "label": 0, "class_name": "a"}
        for k, p in zip(keys, three_images, strict=True)])
    source = scan_manifest(path)
    assert len({r.key for r in source}) == 3
    assert not any("." in r.key or "/" in r.key for r in source)
    out = tmp_path / "out"
    result = run("shard", str(path), "-o", str(out))
    assert result.exit_code == 0, result.output
    [shard] = sorted(out.glob("*.tar"))
    with tarfile.open(shard) as tar:
        names = tar.getnames()
    assert names and not any("/" in n or ".." in n for n in names), names
    samples = list(wds.WebDataset(str(shard), shardshuffle=False))
    assert len(samples) == 3
    assert all("jpg" in s or "png" in s for s in samples)


def test_manifest_keys_are_de_duplicated_like_folder_keys(tmp_path: Path) -> None:
    path = manifest(tmp_path / "m", [{"key": "a.b", "path": "/x/a.b.jpg", "label": 0},
                                     {"key": "a_b", "path": "/x/a_b.png", "label": 0}])
    assert [r.key for r in scan_manifest(path)] == ["a_b_jpg", "a_b_png"]


@pytest.mark.parametrize("label", [10**9, -1, "x", True, 1.0, None, "3"])
def test_manifest_label_must_be_a_class_index(tmp_path: Path, three_images: list[str],
                                               label) -> None:
    path = manifest(tmp_path / "m", [{"key": "ok", "path": three_images[0], "label": 0},
                                     {"key": "bad", "path": three_images[1], "label": label}])
    with pytest.raises(SourceError) as info:
        scan_manifest(path)
    assert str(info.value) == (f"{path}:2: label {label!r} is not a class index; expected an "
                               f"integer from 0 to {MAX_CLASSES - 1:,}")
    result = run("resize", str(path), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == f"Error: {info.value}"


@pytest.mark.parametrize("classes, words", [
    ("not json {", "damaged, not JSON"),
    ("[1, 2]", "expected a JSON object of class name -> label, got a list"),
    ('{"a": "0"}', "class 'a': label '0' is not a class index"),
    ('{"a": 1000000000}', "class 'a': label 1000000000 is not a class index"),
    ('{"a": 0, "b": 0}', "classes 'a' and 'b' share label 0"),
])
def test_damaged_classes_json_is_a_source_error(tmp_path: Path, three_images: list[str],
                                                classes: str, words: str) -> None:
    path = manifest(tmp_path / "m", [{"key": "k", "path": three_images[0], "label": 0}])
    (path.parent / "classes.json").write_text(classes)
    with pytest.raises(SourceError, match="classes.json") as info:
        scan_manifest(path)
    assert words in str(info.value)


def test_manifest_label_beyond_classes_json(tmp_path: Path, three_images: list[str]) -> None:
    path = manifest(tmp_path / "m", [{"key": "k", "path": three_images[0], "label": 2}],
                    {"a": 0, "b": 1})
    with pytest.raises(SourceError, match=r"train.jsonl:1: label 2 is not in .*classes.json"):
        scan_manifest(path)


def test_a_dense_huge_label_allocates_nothing(tmp_path: Path) -> None:
    """A list file's largest label numbers the classes: at MAX_CLASSES it is refused before
    a class list of that length is built."""
    (tmp_path / "l.txt").write_text(f"a.jpg 0\nb.jpg {MAX_CLASSES}\n")
    with pytest.raises(SourceError, match=r"l.txt:2: label 1000000 is beyond"):
        scan_list(tmp_path / "l.txt")


@pytest.mark.parametrize("text, words", [
    (b"\xff\xd8\xff\xe0binary\x00junk\n", "not UTF-8 text, after line 0"),
    (b"a.jpg 0\n/ 1\n", "l.txt:2: path '/' names no file"),
    (b"a.jpg 0\nb.jpg \xc2\xb2\n", "labels mix integers and class names"),
    (b"a.jpg 0\nb.jpg --1\n", "labels mix integers and class names"),
])
def test_malformed_list_files_are_one_line_errors(tmp_path: Path, text: bytes,
                                                  words: str) -> None:
    (tmp_path / "l.txt").write_bytes(text)
    with pytest.raises(SourceError, match="l.txt") as info:
        scan_list(tmp_path / "l.txt")
    assert words in str(info.value)
    result = run("resize", str(tmp_path / "l.txt"), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert words in result.output


def test_manifest_split_must_be_a_plain_name(tmp_path: Path, three_images: list[str]) -> None:
    path = manifest(tmp_path / "m", [{"key": "k", "path": three_images[0], "label": 0,
                                      "split": "../evil"}])
    with pytest.raises(SourceError, match=r"train.jsonl:1: split '../evil' is not a plain"):
        scan_manifest(path)
