"""`verify` against the ledgers, and lazy views expanding into the materialized pixels."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import dataprep
from dataprep.cli import cli

REPO = Path(__file__).resolve().parent.parent
PHOTOS = REPO / "examples" / "photos"


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("verify")
    split = invoke("split", PHOTOS, "-o", root / "splits")
    assert split.exit_code == 0, split.output
    common = ["--short-side", "96", "--crop", "64", "--image-format", "png", "--jobs", "1"]
    for views in ("materialize", "lazy"):
        r = invoke("tencrop", root / "splits" / "train.jsonl", "-o", root / views,
                   "--views", views, "--max-count", "40", *common)
        assert r.exit_code == 0, r.output
    r = invoke("tencrop", root / "splits" / "train.jsonl", "-o", root / "lmdb", "--format",
               "lmdb", *common)
    assert r.exit_code == 0, r.output
    return root


@pytest.mark.parametrize("name", ["materialize", "lmdb"])
def test_verify_passes_on_intact_output(outputs, name):
    result = invoke("verify", outputs / name, "--jobs", "1")
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith("OK:")
    assert "FAIL" not in result.output


def test_verify_fails_on_a_flipped_byte_a_missing_shard_and_an_extra_one(outputs, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(outputs / "materialize", out)
    shards = sorted(out.glob("train-*.tar"))
    assert len(shards) >= 3
    data = bytearray(shards[0].read_bytes())
    data[1000] ^= 0x01
    shards[0].write_bytes(bytes(data))
    shards[1].unlink()
    shutil.copy(shards[2], out / "train-999999.tar")
    result = invoke("verify", out, "--jobs", "1")
    assert result.exit_code == 1
    assert f"{shards[0].name}: sha256 differs from the ledger" in result.output
    assert f"{shards[1].name}: missing" in result.output
    assert "train-999999.tar: on disk but in no ledger" in result.output
    assert result.output.strip().splitlines()[-1].startswith("FAILED")


def test_verify_counts_images_that_do_not_decode(outputs, tmp_path):
    """A sample whose bytes are not an image is reported even when hashes were updated."""
    import json
    import tarfile

    from dataprep.io.staging import sha256_file

    out = tmp_path / "copy"
    shutil.copytree(outputs / "materialize", out)
    shard = sorted(out.glob("train-*.tar"))[0]
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(shard, "w", format=tarfile.GNU_FORMAT) as tar:
        for i, (m, data) in enumerate(members):
            if i == 0:
                data = b"garbage, not a png"
                m.size = len(data)
            tar.addfile(m, __import__("io").BytesIO(data))
    ledger = json.loads((out / "dataprep.json").read_text())
    entry = ledger["splits"]["train"]["shards"][0]
    entry["sha256"], entry["bytes"] = sha256_file(shard), shard.stat().st_size
    (out / "dataprep.json").write_text(json.dumps(ledger))
    result = invoke("verify", out, "--jobs", "1")
    assert result.exit_code == 1
    assert "cannot identify" in result.output or "not an image" in result.output


def test_lazy_views_expand_to_the_materialized_pixels(outputs):
    lazy = list(dataprep.open_dataset(outputs / "lazy"))
    mat = list(dataprep.open_dataset(outputs / "materialize"))
    assert len(lazy) == len(mat) == 220
    for a, b in zip(lazy, mat, strict=True):
        assert a.key == b.key and a.label == b.label and a.meta == b.meta
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))


def test_shard_expand_views_gives_the_materialized_shards(outputs, tmp_path):
    out = tmp_path / "expanded"
    r = invoke("shard", outputs / "lazy", "-o", out, "--expand-views", "--image-format", "png",
               "--max-count", "40", "--jobs", "1")
    assert r.exit_code == 0, r.output
    got = sorted(out.glob("train-*.tar"))
    ref = sorted((outputs / "materialize").glob("train-*.tar"))
    assert [p.name for p in got] == [p.name for p in ref]
    for a, b in zip(got, ref, strict=True):
        assert a.read_bytes() == b.read_bytes()


def test_lazy_views_store_far_fewer_bytes(tmp_path):
    sizes = {}
    for views in ("materialize", "lazy"):
        r = invoke("tencrop", PHOTOS, "-o", tmp_path / views, "--views", views, "--jobs", "1")
        assert r.exit_code == 0, r.output
        sizes[views] = sum(p.stat().st_size for p in (tmp_path / views).glob("*.tar"))
    assert sizes["materialize"] / sizes["lazy"] >= 4


def test_no_decode_says_the_images_were_not_checked(outputs):
    decoded = invoke("verify", outputs / "materialize", "--jobs", "1")
    assert decoded.exit_code == 0, decoded.output
    assert "decoded" in decoded.output.splitlines()[0]
    assert "40/40" in decoded.output and "not checked" not in decoded.output
    skipped = invoke("verify", outputs / "materialize", "--jobs", "1", "--no-decode")
    assert skipped.exit_code == 0, skipped.output
    rows = skipped.output.splitlines()[1:-1]
    assert rows and all("not checked" in row and "/" not in row for row in rows)
    assert "images not decoded: --no-decode" in skipped.output.splitlines()[-1]
