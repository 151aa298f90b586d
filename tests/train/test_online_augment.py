"""Online augmentation = offline augmentation: ``dataprep train`` takes ``dataprep augment``'s
flags and runs the same pipeline, so K epochs online draw from the distribution of
``augment --copies K``.

Which draws coincide, and which are only equal in distribution: ``augment`` draws copy ``k`` of
``key`` from ``sample_rng(seed, key, view=k, epoch=0)``; the trainer draws epoch ``e`` of
``key`` from ``sample_rng(seed, key, view=0, epoch=e)``. The generators coincide for copy 0 and
epoch 0 only, so there the parameters and the pixels must be *identical* (checked through the
trainer's own stream, against the PNG copies ``augment`` wrote). For epochs 1..K-1 and copies
1..K-1 the generators differ, so the draws are independent samples of one distribution: every
drawn scalar (crop offsets and size, flip, angle, shift, color factors and order, PCA alphas,
blur sigma, noise seed) is compared with a two-sample Kolmogorov-Smirnov test over 24 keys x 6.
The seeds are fixed, so the test is deterministic. Any difference of pipeline (a range, a
stage, the order of draws) breaks the epoch-0 identity; the KS tests add that the later epochs
are fresh draws of the same distribution (at the power 144 samples give: a missing stage or a
doubled range, not a 10 % change of one), and not the offline copies' own draws.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASSES, class_image
from PIL import Image
from scipy.stats import ks_2samp

from dataprep.io.readers import iter_samples
from dataprep.jobs.augment import augment
from dataprep.jobs.jitter import build_augment
from dataprep.jobs.shard import shard
from dataprep.ops.rng import sample_rng
from dataprep.train.config import TrainConfig
from dataprep.train.data import ShardStream
from dataprep.train.pixels import draw_params, train_pixels
from dataprep.train.reading import iter_part
from dataprep.train.run_setup import make_augment
from dataprep.train.sources import resolve_source

SEED, COPIES, PER_CLASS, CROP = 5, 6, 8, 32
OFFLINE = dict(scale_jitter="36,48", hflip=True, rotate=10.0, shift=0.1,
               color_jitter="0.4,0.4,0.4,0.1", pca_lighting=0.1, blur=True, noise=0.02)
ONLINE = dict(OFFLINE, scale_jitter=(36, 48), color_jitter=(0.4, 0.4, 0.4, 0.1))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    for label, name in enumerate(CLASSES):
        (root / name).mkdir()
        for i in range(PER_CLASS):
            (root / name / f"{i}.png").write_bytes(class_image(label, i))
    return root


@pytest.fixture(scope="module")
def offline(photos, tmp_path_factory) -> dict[str, dict[int, tuple[dict, np.ndarray]]]:
    """key -> copy -> (drawn parameters, pixels) of ``augment --copies 6``."""
    out = tmp_path_factory.mktemp("augmented")
    augment(photos, out, copies=COPIES, crop=CROP, image_format="png", seed=SEED, jobs=1,
            **OFFLINE)
    copies: dict[str, dict[int, tuple[dict, np.ndarray]]] = {}
    for s in iter_samples(out):
        pixels = np.asarray(Image.open(io.BytesIO(s.image)).convert("RGB"))
        copies.setdefault(s.meta["source"], {})[s.meta["copy"]] = (s.meta["augment"], pixels)
    assert len(copies) == 3 * PER_CLASS
    return copies


@pytest.fixture(scope="module")
def online(photos, tmp_path_factory):
    """(trainer's Augment, the shards' parts) for the same flags on shards of the photos."""
    shards = tmp_path_factory.mktemp("shards")
    shard(photos, shards, jobs=1, keep_formats=True)  # the photos' own bytes, PNGs included
    cfg = TrainConfig(data=str(shards), out="", img_size=CROP, seed=SEED, **ONLINE)
    return make_augment(cfg), resolve_source(str(shards), "train").parts


def _jsonable(params) -> dict:
    return json.loads(json.dumps(dict(params)))


def _scalars(params: dict, prefix: str = "") -> dict[str, float]:
    """Every number in a nested parameter dict, by path (lists indexed, booleans as 0/1)."""
    out: dict[str, float] = {}
    items = params.items() if isinstance(params, dict) else enumerate(params)
    for k, v in items:
        path = f"{prefix}{k}"
        if isinstance(v, (dict, list)):
            out.update(_scalars(v, path + "."))
        elif isinstance(v, (int, float)):
            out[path] = float(v)
    return out


def test_the_trainer_runs_augment_s_pipeline(online):
    aug, _ = online
    assert aug.pipeline == build_augment(crop=CROP, **OFFLINE)
    assert [name for name, _ in aug.pipeline.ops] == [
        "geometry", "hflip", "rotate", "shift", "color_jitter", "pca_lighting", "blur", "noise"]
    assert not aug.resize_first  # scale jitter resizes the stored image itself


def test_epoch_0_online_is_copy_0_offline_pixel_for_pixel(online, offline):
    aug, parts = online
    assert len(parts) == 1
    keys = [s.key for s in iter_part(parts[0], None)]
    stream = ShardStream(parts, train=True, batch_size=1, aug=aug, seed=SEED,
                         batches=len(keys), shuffle_buffer=0)
    stream.set_epoch(0)
    batches = list(stream)
    assert len(batches) == len(keys) == 3 * PER_CLASS
    for key, (x, _) in zip(keys, batches, strict=True):
        params, pixels = offline[key][0]
        online_params = draw_params(aug, sample_rng(SEED, key, 0, 0), (43, 40))
        assert _jsonable(online_params) == params
        np.testing.assert_array_equal(x[0].permute(1, 2, 0).numpy(), pixels)


def test_k_epochs_online_draw_as_k_copies_offline(online, offline):
    aug, _ = online
    on: dict[str, list[float]] = {}
    off: dict[str, list[float]] = {}
    for key, copies in offline.items():
        for k in range(COPIES):
            for path, v in _scalars(copies[k][0]).items():
                off.setdefault(path, []).append(v)
            drawn = _jsonable(draw_params(aug, sample_rng(SEED, key, 0, k), (43, 40)))
            for path, v in _scalars(drawn).items():
                on.setdefault(path, []).append(v)
    assert on.keys() == off.keys() and len(on) >= 15
    for path in on:
        assert len(on[path]) == len(off[path]) == 3 * PER_CLASS * COPIES
        assert ks_2samp(on[path], off[path]).pvalue > 0.001, path
    # and not the same draws: epochs 1.. use other generators than copies 1..
    assert on["rotate.angle"] != off["rotate.angle"]


def test_train_takes_the_augment_flags():
    from dataprep.cli import cli
    from dataprep.train.cli import train

    names = {"scale_jitter", "random_resized_crop", "rotate", "shift", "blur", "noise",
             "color_jitter", "pca_lighting", "stats", "hflip"}
    augment_cmd = cli.get_command(None, "augment")  # type: ignore[arg-type]
    assert names <= {p.name for p in augment_cmd.params}
    assert names <= {p.name for p in train.params}


def test_random_resized_crop_and_lighting_from_stats(tmp_path):
    stats = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2], "eigval": [0.3, 0.02, 0.01],
             "eigvec": [[0.6, -0.7, 0.4], [0.6, 0.0, -0.8], [0.5, 0.7, 0.5]],
             "cov": [[0, 0, 0]] * 3, "num_images": 1, "num_pixels": 1, "num_skipped": 0}
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(stats))
    cfg = TrainConfig(data="", out="", img_size=24, random_resized_crop=True, pca_lighting=0.1,
                      stats=str(path))
    assert cfg.mean == (0.5, 0.4, 0.3) and cfg.std == (0.2, 0.2, 0.2)
    assert TrainConfig(data="", out="", stats=str(path), mean=(0.1, 0.1, 0.1)).mean == \
        (0.1, 0.1, 0.1)  # a flag given wins
    aug = make_augment(cfg)
    assert aug.pipeline == build_augment(crop=24, random_resized_crop=True, hflip=True,
                                         pca_lighting=0.1, stats=str(path))
    assert aug.pipeline.eigval == (0.3, 0.02, 0.01)
    img = Image.new("RGB", (60, 50), (100, 120, 140))
    assert train_pixels(img, False, aug, sample_rng(0, "a")).shape == (24, 24, 3)
