"""Class balance: exact counts, seeded and order-independent choices, distinct keys; split
(train only) and shard through the CLI."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
import webdataset as wds
from click.testing import CliRunner

from dataprep.cli import cli
from dataprep.errors import UsageError
from dataprep.io.scan import scan
from dataprep.jobs.balance import balance, repeat_counts
from dataprep.jobs.split import split_records
from dataprep.records import Record


def records(sizes: dict[str, int], split: str = "train") -> list[Record]:
    return [Record(f"{name}_{i:03d}", f"/x/{name}/{i}.jpg", label, name, split)
            for label, (name, n) in enumerate(sizes.items()) for i in range(n)]


def invoke(*args) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


@pytest.mark.parametrize("mode, target", [("oversample", 7), ("undersample", 2)])
def test_every_class_reaches_the_target_exactly(mode, target):
    recs = records({"a": 7, "b": 2, "c": 3, "d": 7})
    out = balance(recs, mode, seed=0)
    assert Counter(r.class_name for r in out) == dict.fromkeys("abcd", target)
    assert len({r.key for r in out}) == len(out)


def test_oversampling_spreads_repeats_evenly_with_suffixed_keys():
    recs = records({"a": 10, "b": 3})
    out = balance(recs, "oversample", seed=5)
    b = [r for r in out if r.class_name == "b"]
    assert len(b) == 10
    per_image = Counter(r.path for r in b)
    assert sorted(per_image.values()) == [3, 3, 4]  # 10 = 3 * 3 + 1
    for r in b:
        if r.key.startswith("b_") and "_r" in r.key:
            base, rep = r.key.rsplit("_r", 1)
            assert r.meta == {"repeat_of": base, "repeat": int(rep)} and int(rep) >= 1
    # a repetition follows its original
    first = out.index(next(r for r in out if r.key == "b_000"))
    assert out[first + 1].key == "b_000_r1"
    assert [r for r in out if r.class_name == "a"] == recs[:10]


def test_choice_is_seeded_and_independent_of_input_order():
    recs = records({"a": 20, "b": 5})
    shuffled = recs[:]
    random.Random(1).shuffle(shuffled)
    for mode in ("oversample", "undersample"):
        one = sorted(r.key for r in balance(recs, mode, seed=3))
        two = sorted(r.key for r in balance(shuffled, mode, seed=3))
        assert one == two
    kept = {s: {r.key for r in balance(recs, "undersample", seed=s)} for s in range(4)}
    assert len({frozenset(k) for k in kept.values()}) > 1  # the seed changes the choice


def test_each_split_is_balanced_on_its_own():
    recs = records({"a": 6, "b": 2}) + records({"a": 1, "b": 3}, split="val")
    counts = repeat_counts(recs, "oversample")
    out = balance(recs, "oversample")
    got = Counter((r.split, r.class_name) for r in out)
    assert got == {("train", "a"): 6, ("train", "b"): 6, ("val", "a"): 3, ("val", "b"): 3}
    assert sum(counts) == len(out)


def test_no_mode_is_the_identity_and_bad_modes_are_refused():
    recs = records({"a": 3, "b": 1})
    assert balance(recs, None) == recs
    with pytest.raises(UsageError, match="--balance"):
        balance(recs, "smote")


def test_repeated_keys_may_not_collide():
    recs = records({"a": 1, "b": 4})
    clash = [recs[0], Record("a_000_r1", "/x/other.jpg", 0, "a", "train"), *recs[1:]]
    with pytest.raises(UsageError, match="a_000_r1"):
        balance(clash, "oversample")


def test_split_balances_train_only_and_prints_the_counts(image_folder, tmp_path):
    plain, bal = tmp_path / "plain", tmp_path / "bal"
    invoke("split", image_folder, "-o", plain)
    output = invoke("split", image_folder, "-o", bal, "--balance", "oversample", "--seed", "0")
    read = lambda d, n: [json.loads(x) for x in (d / f"{n}.jsonl").read_text().splitlines()]  # noqa: E731
    assert read(bal, "val") == read(plain, "val")
    before = Counter(r["class_name"] for r in read(plain, "train"))
    after = Counter(r["class_name"] for r in read(bal, "train"))
    top = max(before.values())
    assert after == dict.fromkeys(before, top)
    for name, n in before.items():
        assert any(line.split()[-3:] == [name, str(n), str(top)] for line in output.splitlines())
    train = read(bal, "train")
    assert len({r["key"] for r in train}) == len(train)
    # the table's total column counts distinct images, not the train copies
    images = Counter(r["class_name"] for n in ("train", "val") for r in read(plain, n))
    for name, n in images.items():
        row = [line.split() for line in output.splitlines() if line.split()[:1] == [name]][0]
        assert row[1:3] == [str(n), str(top)], row
    assert "total counts distinct images; train counts include the copies" in output
    assert json.loads((bal / "dataprep.json").read_text())["params"]["balance"] == "oversample"
    # off by default: the manifest is exactly split_records' result
    expected = split_records(scan(image_folder).records)["train"]
    assert [r["key"] for r in read(plain, "train")] == [r.key for r in expected]


def test_split_undersample(image_folder, tmp_path):
    invoke("split", image_folder, "-o", tmp_path, "--balance", "undersample")
    train = [json.loads(x) for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    counts = Counter(r["class_name"] for r in train)
    assert len(set(counts.values())) == 1 and len(counts) == 3


def test_shard_balance_writes_exact_counts(image_folder, tmp_path):
    out = tmp_path / "shards"
    output = invoke("shard", image_folder, "-o", out, "--balance", "oversample", "--shuffle",
                    "--jobs", "1")
    urls = sorted(str(p) for p in Path(out).glob("train-*.tar"))
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode())
    classes = Counter(s["json"]["class_name"] for s in samples)
    assert classes == {"ant": 5, "bee": 5, "cat": 5}
    keys = [s["__key__"] for s in samples]
    assert len(set(keys)) == 15
    repeats = [s for s in samples if "repeat_of" in s["json"]]
    assert len(repeats) == 3 and all(s["__key__"].startswith(s["json"]["repeat_of"] + "_r")
                                     for s in repeats)
    assert "balance (oversample), train" in output
    undersampled = tmp_path / "under"
    invoke("shard", image_folder, "-o", undersampled, "--balance", "undersample", "--jobs", "1")
    info = json.loads((undersampled / "_info.json").read_text())
    assert info["splits"]["train"]["num_samples"] == 9
