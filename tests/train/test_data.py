"""The streaming loader: dealing parts, equal batches per rank, views, pixels, LMDB, determinism."""

from __future__ import annotations

import io
import tarfile
from collections import Counter

import numpy as np
import pytest
import torch
from conftest import CLASSES, make_shards, samples, write_split
from PIL import Image

from dataprep.errors import ShardError
from dataprep.jobs.jitter import build_augment
from dataprep.ops.crop import ten_crop
from dataprep.ops.rng import sample_rng
from dataprep.train.data import (
    ShardStream,
    batches_per_epoch,
    make_loader,
    plan_parts,
    view_image,
)
from dataprep.train.pixels import Augment, eval_pixels, online_augment, train_pixels
from dataprep.train.reading import iter_part
from dataprep.train.sources import has_split, resolve_source

AUG = online_augment(32, 36)


@pytest.mark.parametrize("num_parts", range(1, 9))
@pytest.mark.parametrize("num_workers", range(1, 9))
@pytest.mark.parametrize("shape", ["rising", "one_big", "unknown"])
def test_plan_deals_every_sample_exactly_once(num_parts, num_workers, shape):
    lengths = {"rising": [5 + 3 * p for p in range(num_parts)],
               "one_big": [200] + [7] * (num_parts - 1),
               "unknown": [9] * num_parts}[shape]
    counts = [None] * num_parts if shape == "unknown" else lengths
    seen = Counter()
    plan = plan_parts(counts, num_workers)
    assert len(plan) == num_workers
    if (shape != "unknown" and sum(lengths) >= num_workers) or num_parts >= num_workers:
        assert all(plan)  # nobody idles while there are samples to share
    for assignments in plan:
        for a in assignments:
            seen.update((a.part, i) for i in range(lengths[a.part]) if i % a.stride == a.offset)
    assert set(seen.values()) == {1}
    assert len(seen) == sum(lengths)
    if shape == "one_big" and num_workers > 1:  # the big part is sliced: loads stay close
        loads = [sum(len(range(a.offset, lengths[a.part], a.stride)) for a in w) for w in plan]
        assert max(loads) <= 1.5 * sum(lengths) / num_workers + 7


def test_plan_example_from_the_docstring():
    got = [[(a.part, a.stride, a.offset) for a in w] for w in plan_parts([5, 5, 5], 4)]
    assert got == [[(1, 1, 0)], [(2, 1, 0)], [(0, 2, 0)], [(0, 2, 1)]]


def test_plan_balances_uneven_shards():
    plan = plan_parts([500, 500, 500, 500, 99], 2)
    loads = [sum([500, 500, 500, 500, 99][a.part] for a in w) for w in plan]
    assert sorted(loads) == [1000, 1099]


def test_batches_per_epoch():
    assert batches_per_epoch(100, 2, 8) == 6
    with pytest.raises(ShardError, match="--batch-size"):
        batches_per_epoch(10, 2, 8)


def _uneven(tmp_path):
    # 3 classes x 7 = 21 train samples in shards of 5, 5, 5, 5, 1
    return make_shards(tmp_path / "s", train_per_class=7, val_per_class=3, max_count=5)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_every_rank_gets_the_same_number_of_batches(tmp_path, world):
    src = resolve_source(str(_uneven(tmp_path)), "train")
    assert [p.num_samples for p in src.parts] == [5, 5, 5, 5, 1]
    batches = batches_per_epoch(src.num_samples, world, 4)
    for epoch in (0, 1):
        for rank in range(world):
            stream = ShardStream(src.parts, train=True, batch_size=4, aug=AUG, rank=rank,
                                 world_size=world, batches=batches, shuffle_buffer=8)
            stream.set_epoch(epoch)
            got = list(stream)
            assert len(got) == batches
            assert all(x.shape == (4, 3, 32, 32) and x.dtype == torch.uint8 for x, _ in got)


def test_workers_split_the_quota(tmp_path):
    src = resolve_source(str(_uneven(tmp_path)), "train")
    stream = ShardStream(src.parts, train=True, batch_size=2, aug=AUG, rank=1, world_size=2,
                         batches=5, shuffle_buffer=4)
    got = list(make_loader(stream, workers=2))
    assert len(got) == 5


def test_validation_reads_every_sample_once_across_ranks(tmp_path):
    src = resolve_source(str(_uneven(tmp_path)), "train")  # uneven shards as a val set
    labels = Counter()
    for rank in range(3):
        stream = ShardStream(src.parts, train=False, batch_size=4, aug=AUG, rank=rank,
                             world_size=3)
        for _, y in make_loader(stream, workers=2):
            labels.update(y.tolist())
    assert labels == {0: 7, 1: 7, 2: 7}


def test_same_epoch_same_batches_other_epoch_other_order(tmp_path):
    src = resolve_source(str(_uneven(tmp_path)), "train")

    def epoch(e, workers=0):
        s = ShardStream(src.parts, train=True, batch_size=4, aug=AUG, seed=3, batches=5)
        s.set_epoch(e)
        return [(x.clone(), y.clone()) for x, y in make_loader(s, workers)]

    a, b, c = epoch(0), epoch(0), epoch(1)
    assert len(a) == len(b) == len(c) == 5
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2)
               for (x1, y1), (x2, y2) in zip(a, b, strict=True))
    assert not all(torch.equal(y1, y2) for (_, y1), (_, y2) in zip(a, c, strict=True))


def test_lazy_views_expand_in_ten_crop_order(tmp_path):
    out = make_shards(tmp_path / "lazy", train_per_class=2, val_per_class=1, size=40,
                      lazy_crop=32)
    src = resolve_source(str(out), "val")
    sample = next(iter_part(src.parts[0], None))
    img = Image.open(io.BytesIO(sample.image)).convert("RGB")
    expected = ten_crop(img, 32)
    for i in range(10):
        got = view_image(img, sample.meta["views"], i)
        assert np.array_equal(np.asarray(got), np.asarray(expected[i]))
    stream = ShardStream(src.parts, train=False, batch_size=100, aug=AUG)
    (x, y), = list(stream)
    assert len(y) == 3 * 10  # every view of every validation sample
    assert torch.equal(x[0].permute(1, 2, 0), torch.from_numpy(np.array(expected[0])))


def test_train_pixels_crop_inside_and_flip():
    arr = np.arange(40 * 50 * 3, dtype=np.uint32).reshape(40, 50, 3) % 251
    img = Image.fromarray(arr.astype(np.uint8), "RGB")
    aug = online_augment(24, 40, hflip=True)
    flips = 0
    for k in range(20):
        rng = sample_rng(0, "k", 0, k)
        out = train_pixels(img, False, aug, rng)
        assert out.shape == (24, 24, 3)
        params = dict(build_augment(crop=24, hflip=True).make_params(sample_rng(0, "k", 0, k),
                                                                     img.size))
        x, y = params["geometry"]["left"], params["geometry"]["top"]
        window = np.asarray(img)[y:y + 24, x:x + 24]
        flipped = params["hflip"]["flip"]
        flips += flipped
        assert np.array_equal(out, window[:, ::-1] if flipped else window)
    assert 0 < flips < 20


def test_eval_pixels_resize_then_center_crop():
    img = Image.new("RGB", (80, 60), (10, 20, 30))
    assert eval_pixels(img, False, Augment(img_size=32, short_side=36)).shape == (32, 32, 3)
    assert eval_pixels(img, True, Augment(img_size=32, short_side=36)).shape == (32, 32, 3)


def test_color_ops_from_dataprep_ops_are_applied(tmp_path):
    img = Image.new("RGB", (36, 36), (120, 80, 40))
    plain = train_pixels(img, False, AUG, sample_rng(0, "a"))
    aug = online_augment(32, 36, color_jitter=(0.4, 0.4, 0.4, 0.1), pca_lighting=0.1)
    jittered = train_pixels(img, False, aug, sample_rng(0, "a"))
    assert not np.array_equal(plain, jittered)
    assert np.array_equal(jittered, train_pixels(img, False, aug, sample_rng(0, "a")))


def test_lmdb_source_streams(tmp_path):
    out = make_shards(tmp_path / "lmdb", train_per_class=5, val_per_class=2, fmt="lmdb")
    src = resolve_source(str(out), "train")
    assert src.classes == CLASSES and src.num_samples == 15
    assert has_split(str(out), "val")
    stream = ShardStream(src.parts, train=True, batch_size=5, aug=AUG, batches=3)
    got = list(make_loader(stream, workers=0))  # one worker, 3 x 5 = one exact pass
    assert sorted(torch.cat([y for _, y in got]).tolist()) == [0] * 5 + [1] * 5 + [2] * 5
    assert len(list(make_loader(stream, workers=2))) == 3  # two workers share the one part


def test_only_allowed_fields_are_read(tmp_path):
    out = tmp_path / "hostile"
    write_split(out, "train", samples("train", 2), max_count=100)
    shard = out / "train-000000.tar"
    with tarfile.open(shard, "a") as tar:  # members a reader must never unpickle or follow
        for name, data in (("train_red_0000.pyd", b"\x80\x04K\x01."),
                           ("train_red_0000.pth", b"\x80\x04K\x01.")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("train_blue_0000.jpg")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    src = resolve_source(str(out), "train")
    fields = [set(s.meta) for s in iter_part(src.parts[0], None)]
    assert len(fields) == 6
    stream = ShardStream(src.parts, train=False, batch_size=10, aug=AUG)
    assert sum(len(y) for _, y in stream) == 6


def test_a_malformed_label_is_a_shard_error(tmp_path):
    out = tmp_path / "bad"
    write_split(out, "train", samples("train", 1), max_count=100)
    with tarfile.open(out / "train-000000.tar", "a") as tar:
        data = b"not-a-number"
        info = tarfile.TarInfo("zzz.cls")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        png = samples("train", 1)[0].image
        info = tarfile.TarInfo("zzz.png")
        info.size = len(png)
        tar.addfile(info, io.BytesIO(png))
    src = resolve_source(str(out), "train")
    with pytest.raises(ShardError, match="zzz"):
        list(iter_part(src.parts[0], None))


def test_a_missing_data_path_says_it_does_not_exist(tmp_path):
    from dataprep.errors import SourceError
    from dataprep.train.sources import resolve_source

    with pytest.raises(SourceError, match="does not exist; expected a folder of WebDataset "
                                          "shards or LMDB"):
        resolve_source(str(tmp_path / "nope"), "train")
