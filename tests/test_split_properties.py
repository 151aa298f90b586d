"""``split`` contract, as Hypothesis properties and a few concrete cases."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataprep.errors import UsageError
from dataprep.jobs.split import split, split_records
from dataprep.records import Record

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def make_records(counts: list[int], groups: int | None = None) -> list[Record]:
    """``counts[label]`` records per class; with ``groups``, file names share ``g{n}_`` prefixes."""
    out = []
    for label, n in enumerate(counts):
        for i in range(n):
            stem = f"g{label}x{i % groups}_{i}" if groups else f"img{i}"
            out.append(Record(key=f"c{label}__{stem}", path=f"/data/c{label}/{stem}.jpg",
                              label=label, class_name=f"c{label}"))
    return out


def expected_counts(n: int, ratio: float, test_ratio: float = 0.0) -> tuple[int, int, int]:
    """The documented rule, written independently of the implementation."""
    if n <= 1:
        return n, 0, 0
    n_test = 0
    if test_ratio > 0:
        n_test = min(max(round(test_ratio * n), 1 if n >= 3 else 0), n - 2)
    n_train = min(max(round(ratio * n), 1), n - n_test - 1)
    return n_train, n - n_train - n_test, n_test


def keys(records: list[Record]) -> list[str]:
    return [r.key for r in records]


counts_st = st.lists(st.integers(0, 25), min_size=1, max_size=5)
ratio_st = st.floats(0.05, 0.95)
seed_st = st.integers(0, 2**31)


@SETTINGS
@given(counts=counts_st, ratio=ratio_st, seed=seed_st)
def test_disjoint_covering_and_exact_counts(counts, ratio, seed):
    records = make_records(counts)
    out = split_records(records, ratio=ratio, seed=seed)
    assert set(out) == {"train", "val"}
    all_keys = [k for name in out for k in keys(out[name])]
    assert len(all_keys) == len(set(all_keys)), "a record landed in two splits"
    assert sorted(all_keys) == sorted(keys(records)), "a record was lost or invented"
    for name, recs in out.items():
        assert all(r.split == name for r in recs)
    for label, n in enumerate(counts):
        got = tuple(sum(r.label == label for r in out[s]) for s in ("train", "val"))
        assert got == expected_counts(n, ratio)[:2], (label, n, ratio)
        if n >= 2:
            assert min(got) >= 1


@SETTINGS
@given(counts=counts_st, ratio=st.floats(0.3, 0.7), test_ratio=st.floats(0.01, 0.25),
       seed=seed_st)
def test_test_split_counts(counts, ratio, test_ratio, seed):
    out = split_records(make_records(counts), ratio=ratio, test_ratio=test_ratio, seed=seed)
    assert set(out) == {"train", "val", "test"}
    for label, n in enumerate(counts):
        got = tuple(sum(r.label == label for r in out[s]) for s in ("train", "val", "test"))
        assert got == expected_counts(n, ratio, test_ratio), (label, n)


@SETTINGS
@given(counts=counts_st, ratio=ratio_st, seed=seed_st, shuffle_seed=st.integers(0, 1000))
def test_independent_of_input_order(counts, ratio, seed, shuffle_seed):
    records = make_records(counts)
    shuffled = list(records)
    random.Random(shuffle_seed).shuffle(shuffled)
    a = split_records(records, ratio=ratio, seed=seed)
    b = split_records(shuffled, ratio=ratio, seed=seed)
    assert {n: keys(r) for n, r in a.items()} == {n: keys(r) for n, r in b.items()}


@SETTINGS
@given(counts=st.lists(st.integers(2, 25), min_size=1, max_size=4), ratio=ratio_st,
       seed=seed_st)
def test_train_grows_with_ratio(counts, ratio, seed):
    """The first round(ratio * n) of one ranking go to train: a larger ratio only adds."""
    records = make_records(counts)
    small = set(keys(split_records(records, ratio=ratio * 0.6, seed=seed)["train"]))
    large = set(keys(split_records(records, ratio=ratio, seed=seed)["train"]))
    assert small <= large


@SETTINGS
@given(counts=st.lists(st.integers(0, 25), min_size=2, max_size=4), seed=seed_st)
def test_a_class_split_ignores_other_classes(counts, seed):
    records = make_records(counts)
    alone = [r for r in records if r.label == 0]
    a = [k for k in keys(split_records(records, seed=seed)["train"]) if k.startswith("c0__")]
    b = keys(split_records(alone, seed=seed)["train"])
    assert a == b


def test_seed_changes_the_result():
    records = make_records([30, 30])
    trains = {tuple(keys(split_records(records, seed=s)["train"])) for s in range(5)}
    assert len(trains) == 5
    assert keys(split_records(records, seed=3)["train"]) == keys(
        split_records(records, seed=3)["train"])


def test_the_ranking_is_not_the_input_order():
    records = make_records([40])
    train = keys(split_records(records, ratio=0.5, seed=0)["train"])
    assert train != keys(records)[:20]


@SETTINGS
@given(counts=st.lists(st.integers(1, 30), min_size=1, max_size=4),
       groups=st.integers(1, 8), ratio=ratio_st, seed=seed_st)
def test_group_by_keeps_groups_together(counts, groups, ratio, seed):
    records = make_records(counts, groups=groups)
    out = split_records(records, ratio=ratio, seed=seed, group_by=r"/(g\d+x\d+)_\d+\.jpg$")
    where: dict[str, set[str]] = defaultdict(set)
    for name, recs in out.items():
        for r in recs:
            where[r.key.split("__")[1].split("_")[0]].add(name)
    assert all(len(s) == 1 for s in where.values()), "a group spans splits"
    assert sorted(k for recs in out.values() for k in keys(recs)) == sorted(keys(records))


@SETTINGS
@given(sizes=st.lists(st.integers(1, 6), min_size=2, max_size=6), ratio=ratio_st, seed=seed_st)
def test_group_by_class_with_two_groups_has_both_splits(sizes, ratio, seed):
    """A class with at least two groups keeps at least one group in train and one in val."""
    records = []
    for g, size in enumerate(sizes):
        for i in range(size):
            records.append(Record(key=f"c__g{g}_{i}", path=f"/d/c/g{g}_{i}.jpg", label=0,
                                  class_name="c"))
    out = split_records(records, ratio=ratio, seed=seed, group_by=r"(g\d+)_\d+\.jpg$")
    assert out["train"] and out["val"], {n: keys(r) for n, r in out.items()}


@SETTINGS
@given(sizes=st.lists(st.integers(1, 6), min_size=3, max_size=6), seed=seed_st)
def test_group_by_class_with_three_groups_fills_a_test_split_too(sizes, seed):
    records = [Record(key=f"c__g{g}_{i}", path=f"/d/c/g{g}_{i}.jpg", label=0, class_name="c")
               for g, size in enumerate(sizes) for i in range(size)]
    out = split_records(records, ratio=0.6, test_ratio=0.2, seed=seed,
                        group_by=r"(g\d+)_\d+\.jpg$")
    assert out["train"] and out["val"] and out["test"], {n: keys(r) for n, r in out.items()}


def test_group_by_concrete_case():
    records = make_records([12], groups=3)  # groups g0x0, g0x1, g0x2 of four images each
    out = split_records(records, ratio=0.6, seed=0, group_by=r"(g\d+x\d+)_\d+\.jpg$")
    per_split = {n: {k.split("__")[1].split("_")[0] for k in keys(r)} for n, r in out.items()}
    assert per_split["train"].isdisjoint(per_split["val"])
    assert len(out["train"]) % 4 == 0 and len(out["val"]) % 4 == 0
    assert out["train"] and out["val"]


@SETTINGS
@given(counts=counts_st, limit=st.integers(1, 12), seed=seed_st,
       shuffle_seed=st.integers(0, 1000))
def test_per_class_limit(counts, limit, seed, shuffle_seed):
    records = make_records(counts)
    out = split_records(records, ratio=0.7, seed=seed, per_class_limit=limit)
    chosen = [r for recs in out.values() for r in recs]
    per_class = Counter(r.label for r in chosen)
    for label, n in enumerate(counts):
        assert per_class.get(label, 0) == min(n, limit)
        got = tuple(sum(r.label == label for r in out[s]) for s in ("train", "val"))
        assert got == expected_counts(min(n, limit), 0.7)[:2]
    assert set(keys(chosen)) <= set(keys(records))
    shuffled = list(records)
    random.Random(shuffle_seed).shuffle(shuffled)
    again = split_records(shuffled, ratio=0.7, seed=seed, per_class_limit=limit)
    assert {n: keys(r) for n, r in out.items()} == {n: keys(r) for n, r in again.items()}


@pytest.mark.parametrize(("ratio", "test_ratio"), [(0.0, 0.0), (1.0, 0.0), (1.5, 0.0),
                                                   (0.8, 0.2), (0.8, -0.1), (0.7, 0.4)])
def test_bad_ratios_are_usage_errors(ratio, test_ratio):
    with pytest.raises(UsageError, match="ratio"):
        split_records(make_records([5]), ratio=ratio, test_ratio=test_ratio)


def test_split_writes_manifests_classes_and_table(image_folder, tmp_path, read_jsonl):
    out = tmp_path / "splits"
    result = split(image_folder, out, ratio=0.5, seed=7)
    train, val = read_jsonl(out / "train.jsonl"), read_jsonl(out / "val.jsonl")
    assert json.loads((out / "classes.json").read_text()) == {"ant": 0, "bee": 1, "cat": 2}
    assert len(train) + len(val) == 12
    # ant 4 -> 2/2, bee 3 -> round(1.5) = 2 (half to even) /1, cat 5 -> round(2.5) = 2 /3
    assert Counter(r["class_name"] for r in train) == {"ant": 2, "bee": 2, "cat": 2}
    assert Counter(r["class_name"] for r in val) == {"ant": 2, "bee": 1, "cat": 3}
    assert all(r["split"] == "train" for r in train) and all(r["split"] == "val" for r in val)
    assert {r["key"] for r in train}.isdisjoint(r["key"] for r in val)
    table = {row["class"]: row for row in result.table}
    assert table["cat"] == {"class": "cat", "train": 2, "val": 3, "total": 5}
    text = "\n".join(result.lines())
    assert "train.jsonl" in text and "cat" in text
    with pytest.raises(UsageError, match="overwrite"):
        split(image_folder, out, ratio=0.5)
    split(image_folder, out, ratio=0.5, seed=7, overwrite=True)
    assert read_jsonl(out / "train.jsonl") == train


def test_single_image_class_goes_to_train_with_a_warning(tmp_path, make_folder):
    root = make_folder(tmp_path / "img", {"one": [(20, 20)], "two": [(20, 20), (21, 21)]})
    result = split(root, tmp_path / "s", ratio=0.8)
    assert [r.key for r in result.splits["train"] if r.class_name == "one"] == ["one__img0"]
    assert any("single image" in w for w in result.warnings)
