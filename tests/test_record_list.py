"""RecordList: records packed into flat buffers read back exactly, and scans built on it."""

from __future__ import annotations

import json
import os
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataprep.errors import SourceError
from dataprep.io.scan import scan
from dataprep.jobs.split import split
from dataprep.records import Record, RecordList, make_key

# any code point (lone surrogates too: file names that are not UTF-8), "", "__" and "/"
text = st.text(st.characters(exclude_categories=()), max_size=20)
records_strategy = st.lists(
    st.builds(Record, key=text, path=text, label=st.integers(-2**63, 2**63 - 1),
              class_name=text, split=text, group=st.none() | text),
    max_size=30)


@settings(max_examples=300, deadline=None)
@given(records_strategy)
def test_packed_records_read_back_equal(records):
    packed = RecordList(records)
    assert len(packed) == len(records)
    assert list(packed) == records
    assert [packed[i] for i in range(len(records))] == records
    assert [packed[i] for i in range(-len(records), 0)] == records
    assert packed[1:-1:2] == records[1:-1:2]
    assert packed == records and records == packed


def test_index_errors_and_equality():
    recs = [Record("a__b", "/x/b.jpg", 1, "a"), Record("c", "c.jpg", 0, "c", "val", "g")]
    packed = RecordList(recs)
    with pytest.raises(IndexError):
        packed[2]
    with pytest.raises(IndexError):
        packed[-3]
    assert packed != recs[:1]
    assert packed != [recs[1], recs[0]]
    assert packed != "ab"
    assert packed[-1].group == "g" and packed[0].group is None


def test_records_with_data_are_not_packed():
    with pytest.raises(ValueError, match="only file records"):
        RecordList([Record("k", "", 0, "c", data=b"x", ext="jpg")])


def test_relabel_maps_every_class():
    packed = RecordList(Record(f"k{i}", f"/p/{i}.jpg", 0, name)
                        for i, name in enumerate(["dog", "cat", "dog", "7"]))
    packed.relabel({"dog": (1, "dog"), "cat": (0, "cat"), "7": (7, "seven")})
    assert [(r.label, r.class_name) for r in packed] == [
        (1, "dog"), (0, "cat"), (1, "dog"), (7, "seven")]
    assert [r.key for r in packed] == ["k0", "k1", "k2", "k3"]


def test_packed_is_several_times_smaller_than_objects():
    def weigh(build):
        tracemalloc.start()
        try:
            held = build()
            size = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert len(held) == 20_000
        return size

    def records():
        return [Record(make_key(f"class{i % 7}/img_{i:06d}.jpg"),
                       f"/data/images/class{i % 7}/img_{i:06d}.jpg", i % 7, f"class{i % 7}")
                for i in range(20_000)]

    as_objects = weigh(records)
    as_packed = weigh(lambda: RecordList(records()))
    assert as_packed * 3 < as_objects, (as_packed, as_objects)


def _photo_tree(root, gradient):
    for cls in ("b", "a__x", "c"):
        for name in ("1.jpg", "2.png", "sub/3.jpg", "é 4.jpg", "5.png"):
            path = root / cls / name
            path.parent.mkdir(parents=True, exist_ok=True)
            gradient(6, 5).save(path)
    gradient(6, 5).save(root / "c" / "5.jpg")  # collides with 5.png: both get extensions


def test_packed_and_plain_scans_agree(tmp_path, gradient):
    _photo_tree(tmp_path / "root", gradient)
    lst = tmp_path / "list.txt"
    lst.write_text("# comment\n\nroot/b/1.jpg dog\nroot/c/5.png\tcat\n/abs/x.jpg,dog\n"
                   "root/a__x/é 4.jpg cat\n")
    nums = tmp_path / "nums.txt"
    nums.write_text("root/b/1.jpg 3\nroot/c/5.png 0\n")
    split(tmp_path / "root", tmp_path / "splits", ratio=0.5, seed=1)
    sources = [tmp_path / "root", lst, nums, tmp_path / "splits" / "val.jsonl"]
    for src in sources:
        packed, plain = scan(src), scan(src, packed=False)
        assert isinstance(packed.records, RecordList) and isinstance(plain.records, list)
        assert packed.records == plain.records and len(plain.records) > 1
        assert packed.classes == plain.classes
    keys = [r.key for r in scan(tmp_path / "root").records]
    assert len(set(keys)) == len(keys) and "c__5_jpg" in keys and "c__5_png" in keys
    assert [(r.label, r.class_name) for r in scan(lst).records] == [
        (1, "dog"), (0, "cat"), (1, "dog"), (0, "cat")]
    assert [(r.label, r.class_name) for r in scan(nums).records] == [(3, "3"), (0, "0")]
    val = [json.loads(line) for line in (tmp_path / "splits" / "val.jsonl").read_text().split("\n")
           if line]
    assert [r.to_json() for r in scan(tmp_path / "splits" / "val.jsonl").records] == val


def test_keys_still_colliding_after_extensions_are_refused(tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text("a/x.jpg 0\nb/y.jpg 0\na/x.jpg 1\n")  # one file listed twice
    with pytest.raises(SourceError, match="duplicate keys"):
        scan(lst)


def test_file_names_that_are_not_utf8_are_listed(tmp_path, gradient):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    gradient(6, 5).save(root / "a" / "ok.png")
    gradient(6, 5).save(bytes(root / "a") + b"/caf\xe9.png")  # Latin-1 name
    packed = scan(root).records
    assert packed == scan(root, packed=False).records
    assert sorted(r.path for r in packed) == sorted(
        os.path.join(root, "a", n) for n in os.listdir(root / "a"))
    split(root, tmp_path / "splits", ratio=0.5, seed=0)
    back = [r for n in ("train", "val") for r in scan(tmp_path / "splits" / f"{n}.jsonl").records]
    assert sorted(r.path for r in back) == sorted(r.path for r in packed)


@pytest.mark.parametrize(("text", "message"), [
    ("a.jpg 0\nb.jpg -1\n", "negative"),
    ("a.jpg 0\nb.jpg 99999999999999999999\n", "beyond"),
])
def test_list_labels_out_of_range_are_refused(tmp_path, text, message):
    lst = tmp_path / "list.txt"
    lst.write_text(text)
    with pytest.raises(SourceError, match=message):
        scan(lst)


@pytest.mark.parametrize("record", [
    {"key": "k", "path": "/p.jpg", "label": 2**70},
    {"key": "k", "path": "/p.jpg", "label": "x"},
])
def test_manifest_records_out_of_range_are_refused_with_their_line(tmp_path, record):
    path = tmp_path / "val.jsonl"
    path.write_text('{"key": "a", "path": "/a.jpg", "label": 0}\n' + json.dumps(record) + "\n")
    with pytest.raises(SourceError, match=r"val.jsonl:2"):
        scan(path)


def test_manifest_groups_are_text(tmp_path):
    path = tmp_path / "val.jsonl"
    path.write_text('{"key": "a", "path": "/a.jpg", "label": 0, "group": 5}\n')
    assert [r.group for r in scan(path).records] == ["5"]


def test_list_lines_break_where_str_splitlines_breaks(tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text("a.jpg 0\fb.jpg 1\u2028c.jpg 0\r\nd.jpg 1\n", encoding="utf-8")
    assert [(r.key, r.label) for r in scan(lst).records] == [
        ("a", 0), ("b", 1), ("c", 0), ("d", 1)]
