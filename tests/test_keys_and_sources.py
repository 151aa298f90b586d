"""Keys (dot-free, slash-free, stable) and sources: folder, list file, manifest, shards."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataprep.errors import SourceError
from dataprep.io.scan import natural_key, scan
from dataprep.jobs.shard import shard
from dataprep.records import Record, make_key


@pytest.mark.parametrize(
    ("relpath", "key"),
    [
        ("animals/cat.01.jpg", "animals__cat_01"),
        ("animals/cat.jpg", "animals__cat"),
        ("a/b/c d.png", "a__b__c_d"),
        ("x\\y.jpg", "x__y"),
        ("./cls/img.jpeg", "cls__img"),
        ("cls/.hidden", "cls___hidden"),
        ("cls/noext", "cls__noext"),
        ("cls/été.jpg", "cls__été"),
        ("cls/a+b=c.png", "cls__a_b_c"),
    ],
)
def test_make_key_table(relpath, key):
    assert make_key(relpath) == key


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=12).filter(lambda t: t not in (".", "..")),
                min_size=1, max_size=4))
def test_keys_never_hold_dots_or_slashes(parts):
    rel = "/".join(parts)
    try:
        key = make_key(rel)
    except ValueError:
        return  # nothing left of the path
    assert "." not in key and "/" not in key and "\\" not in key
    assert key == make_key(rel)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="aZ09_-./\\ +é", min_size=1, max_size=24))
def test_the_plain_path_shortcut_gives_the_general_rule(rel):
    from dataprep.records import _general_key

    try:
        expected = _general_key(rel)
    except ValueError:
        with pytest.raises(ValueError):
            make_key(rel)
        return
    assert make_key(rel) == expected


def test_folder_scan_natural_order_labels_and_filters(tmp_path, gradient):
    root = tmp_path / "root"
    for cls in ("class10", "class2", "class1"):
        (root / cls / "sub").mkdir(parents=True)
    for name in ("img10.png", "img2.png", "img1.PNG", ".hidden.png", "notes.txt"):
        gradient(8, 8).save(root / "class2" / name, "PNG") if name.lower().endswith("png") \
            else (root / "class2" / name).write_text("x")
    gradient(8, 8).save(root / "class2" / "sub" / "deep.png")
    gradient(8, 8).save(root / "class1" / "a.jpg")
    gradient(8, 8).save(root / "class10" / "b.webp")
    (root / ".cache").mkdir()
    src = scan(root)
    assert src.kind == "folder"
    assert src.classes == ["class1", "class2", "class10"]
    assert [r.key for r in src] == ["class1__a", "class2__img1", "class2__img2", "class2__img10",
                                    "class2__sub__deep", "class10__b"]
    assert [r.label for r in src] == [0, 1, 1, 1, 1, 2]
    assert all(r.class_name == src.classes[r.label] for r in src)


def test_colliding_keys_get_their_extension(tmp_path, gradient):
    d = tmp_path / "root" / "c"
    d.mkdir(parents=True)
    gradient(8, 8).save(d / "a.png")
    gradient(8, 8).save(d / "a.jpg")
    gradient(8, 8).save(d / "a.b.png")  # a_b: no collision
    keys = sorted(r.key for r in scan(tmp_path / "root"))
    assert keys == ["c__a_b", "c__a_jpg", "c__a_png"]


def test_natural_key():
    names = ["img10", "img2", "Img1", "img1"]
    assert sorted(names, key=natural_key) == ["Img1", "img1", "img2", "img10"]


def test_list_file_with_class_names_and_root(tmp_path, gradient):
    images = tmp_path / "images"
    images.mkdir()
    for n in ("a", "b", "c"):
        gradient(8, 8).save(images / f"{n}.png")
    lst = tmp_path / "lists" / "all.txt"
    lst.parent.mkdir()
    lst.write_text("# comment\n\na.png dog\nb.png\tcat\nc.png dog\n")
    src = scan(lst, root=images)
    assert src.kind == "list" and src.classes == ["cat", "dog"]
    assert [(r.key, r.label, r.class_name) for r in src] == [("a", 1, "dog"), ("b", 0, "cat"),
                                                             ("c", 1, "dog")]
    assert all(r.path.startswith(str(images)) for r in src)


def test_list_file_with_integer_labels(tmp_path):
    lst = tmp_path / "l.txt"
    lst.write_text("x/a.jpg 2\nx/b.jpg 0\n")
    src = scan(lst)
    assert src.classes == ["0", "1", "2"]
    assert [r.label for r in src] == [2, 0]


@pytest.mark.parametrize("text", ["a.jpg 1\nb.jpg cat\n", "just-a-path\n", "# nothing\n"])
def test_bad_list_files_are_source_errors(tmp_path, text):
    lst = tmp_path / "l.txt"
    lst.write_text(text)
    with pytest.raises(SourceError):
        scan(lst)


def test_manifest_round_trip(tmp_path):
    records = [Record("k1", "/p/1.jpg", 0, "a", "val"), Record("k2", "/p/2.jpg", 1, "b", "",
                                                                 group="g")]
    path = tmp_path / "val.jsonl"
    path.write_text("".join(json.dumps(r.to_json()) + "\n" for r in records))
    (tmp_path / "classes.json").write_text(json.dumps({"a": 0, "b": 1}))
    src = scan(path)
    assert src.kind == "manifest" and src.classes == ["a", "b"]
    got = list(src)
    assert got[0] == records[0]
    assert got[1].split == "val" and got[1].group == "g"  # split defaults to the file's stem


def test_unknown_source_file_type(tmp_path):
    (tmp_path / "x.yaml").write_text("a: 1")
    with pytest.raises(SourceError, match="unknown source file type"):
        scan(tmp_path / "x.yaml")


@pytest.mark.parametrize("fmt", ["webdataset", "lmdb"])
def test_shards_are_a_source_too(image_folder, tmp_path, fmt):
    out = tmp_path / "shards"
    shard(image_folder, out, fmt=fmt, jobs=1, max_count=5, keep_formats=True)
    src = scan(out)
    assert src.kind == fmt
    assert src.classes == ["ant", "bee", "cat"]
    assert len(src) == 12
    folder_records = list(scan(image_folder))
    got = list(src)
    assert [r.key for r in got] == [r.key for r in folder_records]
    assert [r.label for r in got] == [r.label for r in folder_records]
    assert all(r.data == open(f.path, "rb").read() for r, f in zip(got, folder_records,
                                                                    strict=True))


def test_non_ascii_file_names_keep_distinct_keys(tmp_path, gradient):
    """Class and file names in any script: keys stay unique, dot-free and slash-free."""
    root = tmp_path / "root"
    names = {"猫": ["小猫.png", "大猫.png"], "狗": ["黑狗.png"],
             "café": ["crème.png", "brûlée.png"]}
    for cls, files in names.items():
        (root / cls).mkdir(parents=True)
        for f in files:
            gradient(12, 10).save(root / cls / f)
    keys = [r.key for r in scan(root)]
    assert len(set(keys)) == 5
    assert "猫__小猫" in keys and "café__crème" in keys
    assert all("." not in k and "/" not in k for k in keys)


def test_decomposed_unicode_gives_the_same_key():
    """macOS writes names decomposed (NFD); the key is that of the composed (NFC) name."""
    import unicodedata

    name = "café/crème.jpg"
    assert make_key(unicodedata.normalize("NFD", name)) == make_key(name) == "café__crème"


def test_non_ascii_keys_survive_every_writer(tmp_path, gradient):
    import webdataset as wds

    from dataprep.jobs.tencrop import resize

    root = tmp_path / "root"
    (root / "猫").mkdir(parents=True)
    for f in ("小猫.png", "大猫.png", "老猫.png"):
        gradient(12, 10).save(root / "猫" / f)
    resize(root, tmp_path / "wds", short_side=8, jobs=1)
    urls = sorted(str(p) for p in (tmp_path / "wds").glob("*.tar"))
    assert [d["__key__"] for d in wds.WebDataset(urls, shardshuffle=False)] == [
        "猫__大猫", "猫__小猫", "猫__老猫"]
    resize(root, tmp_path / "folder", short_side=8, jobs=1, fmt="folder")
    assert len(list((tmp_path / "folder").rglob("*.jpg"))) == 3  # no file overwrote another


def test_brace_pattern_and_single_tar_sources(image_folder, tmp_path):
    out = tmp_path / "shards"
    shard(image_folder, out, jobs=1, max_count=5)
    every = [r.key for r in scan(out)]
    assert len(every) == 12
    assert [r.key for r in scan(f"{out}/train-{{000000..000002}}.tar")] == every
    assert [r.key for r in scan(f"{out}/train-{{000001..000002}}.tar")] == every[5:]
    assert [r.key for r in scan(out / "train-000002.tar")] == every[10:]


def test_import_dataprep_loads_no_heavy_dependency():
    """The library and its prep jobs import stdlib, Pillow and numpy only."""
    import subprocess
    import sys

    code = ("import sys, dataprep, dataprep.ops, dataprep.io.scan, dataprep.io.decode, "
            "dataprep.jobs.tencrop, dataprep.jobs.split, dataprep.jobs.shard\n"
            "heavy = ('torch', 'torchvision', 'webdataset', 'lmdb', 'joblib', 'matplotlib', "
            "'albumentations', 'click', 'dask', 'ray')\n"
            "print(','.join(m for m in heavy if m in sys.modules))\n"
            "assert callable(dataprep.tencrop) and callable(dataprep.split)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
