"""Pixel statistics: exact partial sums, merge, finalize, jobs, stats.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from imagegen import gradient
from PIL import Image

from dataprep.errors import ImageError, UsageError
from dataprep.io.decode import encode_image, open_image
from dataprep.jobs.stats import compute_stats, load_stats, write_stats
from dataprep.ops import stats as ops_stats
from dataprep.ops.resize import resize_short_side
from dataprep.ops.stats import (
    PixelSums,
    check_stats,
    finalize_stats,
    merge_sums,
    pixel_sums,
    rgb_pca,
)
from dataprep.records import Record, Sample

PHOTOS = Path(__file__).resolve().parents[1] / "examples" / "photos"
PHOTO_PATHS = sorted(
    str(p) for p in PHOTOS.glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")
)
RTOL = 1e-6




def reference(images: list[np.ndarray]) -> dict[str, np.ndarray]:
    """numpy over the concatenated pixels: population covariance (bias=True), eigh."""
    x = np.concatenate([a.reshape(-1, 3) for a in images]).astype(np.float64) / 255.0
    cov = np.cov(x, rowvar=False, bias=True)
    val, vec = np.linalg.eigh(cov)
    order = np.argsort(val)[::-1]
    return {"x_mean": x.mean(axis=0), "x_std": x.std(axis=0), "cov": cov,
            "eigval": val[order], "eigvec": vec[:, order], "n": len(x)}


def assert_matches(stats: dict, ref: dict, rtol: float = RTOL) -> None:
    np.testing.assert_allclose(stats["mean"], ref["x_mean"], rtol=rtol)
    np.testing.assert_allclose(stats["std"], ref["x_std"], rtol=rtol)
    # Exact zeros (independent channels) against numpy's round-off need a tiny atol.
    np.testing.assert_allclose(stats["cov"], ref["cov"], rtol=rtol, atol=1e-15)
    np.testing.assert_allclose(stats["eigval"], ref["eigval"], rtol=rtol)
    vec = np.asarray(stats["eigvec"])
    for j in range(3):
        # Same direction up to sign; the sign itself is pinned by test_sign_convention.
        sign = np.sign(vec[:, j] @ ref["eigvec"][:, j])
        np.testing.assert_allclose(vec[:, j], sign * ref["eigvec"][:, j], rtol=rtol, atol=1e-9)
    assert stats["num_pixels"] == ref["n"]


@pytest.fixture(scope="module")
def photo_reference() -> dict:
    return reference([np.asarray(open_image(p)) for p in PHOTO_PATHS])


def test_photos_present():
    assert len(PHOTO_PATHS) >= 20


@pytest.mark.parametrize("jobs", [1, 2])
def test_real_photos_match_numpy(photo_reference, jobs):
    stats = compute_stats(PHOTO_PATHS, jobs=jobs)
    assert_matches(stats, photo_reference)
    assert stats["num_images"] == len(PHOTO_PATHS)
    assert stats["num_skipped"] == 0 and stats["errors"] == []


def test_jobs_do_not_change_a_bit():
    a = compute_stats(PHOTO_PATHS[:9], jobs=1)
    b = compute_stats(PHOTO_PATHS[:9], jobs=2)
    assert json.dumps(a) == json.dumps(b)


def test_source_folder_is_scanned():
    stats = compute_stats(str(PHOTOS), jobs=1, short_side=32)
    assert stats["num_images"] == len(PHOTO_PATHS)


def test_chunked_sums_equal_whole_sums(monkeypatch):
    img = gradient(101, 99)
    whole = pixel_sums(img)
    monkeypatch.setattr(ops_stats, "CHUNK_PIXELS", 1000)  # 11 chunks, the last one partial
    assert pixel_sums(img) == whole
    a = np.asarray(img).reshape(-1, 3).astype(np.int64)
    assert whole.count == 101 * 99 and whole.num_images == 1
    assert whole.sum == a.sum(axis=0).tolist()
    assert whole.sum_sq == (a.T @ a).tolist()


def test_merge_is_exact_in_any_order():
    arrays = [np.asarray(gradient(w, h)) for w, h in [(101, 99), (9, 7), (1, 1), (31, 64)]]
    parts = [pixel_sums(a) for a in arrays]
    forward, backward = merge_sums(parts), merge_sums(parts[::-1])
    paired = merge_sums([parts[0] + parts[3], parts[2] + parts[1]])
    assert forward == backward == paired
    assert forward.num_images == 4
    assert_matches(finalize_stats(forward), reference(arrays))


def test_no_cancellation_with_large_mean_and_tiny_variance():
    # Pixels 254/255 only: E[x^2] - E[x]^2 in float32 or naive float64 loses most digits.
    rng = np.random.default_rng(0)
    arr = (254 + rng.integers(0, 2, size=(300, 301, 3))).astype(np.uint8)
    assert_matches(finalize_stats(pixel_sums(arr)), reference([arr]), rtol=1e-9)


def test_sign_convention_and_shapes():
    stats = compute_stats(PHOTO_PATHS[:5], jobs=1)
    val, vec, cov = (np.asarray(stats[k]) for k in ("eigval", "eigvec", "cov"))
    assert val.shape == (3,) and vec.shape == (3, 3)
    assert val[0] >= val[1] >= val[2] >= 0
    for j in range(3):
        assert vec[np.argmax(np.abs(vec[:, j])), j] > 0
    np.testing.assert_allclose(vec.T @ vec, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(vec @ np.diag(val) @ vec.T, cov, atol=1e-12)


def test_rgb_pca_flips_signs_deterministically():
    cov = np.diag([0.01, 0.2, 0.05])
    val, vec = rgb_pca(cov)
    np.testing.assert_allclose(val, [0.2, 0.05, 0.01])
    np.testing.assert_allclose(vec, [[0, 0, 1], [1, 0, 0], [0, 1, 0]], atol=0)


def test_gray_images_clip_round_off_eigenvalues():
    gray = np.repeat(np.asarray(gradient(50, 40))[..., :1], 3, axis=2)
    stats = finalize_stats(pixel_sums(gray))
    assert stats["eigval"][1] == 0.0 or stats["eigval"][1] < 1e-15
    assert min(stats["eigval"]) >= 0.0
    np.testing.assert_allclose(np.abs(stats["eigvec"])[:, 0], [3 ** -0.5] * 3, rtol=1e-12)


def test_short_side_resizes_first():
    paths = PHOTO_PATHS[:4]
    stats = compute_stats(paths, jobs=1, short_side=48, exact=True)
    ref = reference([np.asarray(resize_short_side(open_image(p), 48)) for p in paths])
    assert_matches(stats, ref)


def test_records_with_bytes_and_samples(tmp_path):
    img = gradient(101, 99)
    png = encode_image(img, "png")
    rec = Record(key="a", path="", label=0, class_name="x", data=png, ext="png")
    sample = Sample(key="b", image=png, ext="png", cls=0, meta={})
    path = tmp_path / "c.png"
    path.write_bytes(png)
    stats = compute_stats([rec, sample, path, png], jobs=1)
    assert stats["num_images"] == 4
    assert_matches(stats, reference([np.asarray(img)] * 4))


def test_bad_files_are_skipped_and_listed(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    stats = compute_stats([PHOTO_PATHS[0], empty, text], jobs=1)
    assert stats["num_images"] == 1 and stats["num_skipped"] == 2
    assert [e["path"] for e in stats["errors"]] == [str(empty), str(text)]
    assert all(e["reason"] for e in stats["errors"])
    with pytest.raises(ImageError, match="empty.jpg"):
        compute_stats([PHOTO_PATHS[0], empty], jobs=1, on_error="raise")


def test_nothing_usable_is_an_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("x")
    with pytest.raises(UsageError, match="no pixels"):
        compute_stats([bad], jobs=1)
    with pytest.raises(UsageError, match="no pixels"):
        compute_stats([], jobs=1)


@pytest.mark.parametrize("bad", [
    Image.new("L", (4, 4)),
    Image.new("RGBA", (4, 4)),
    np.zeros((4, 4, 3), np.float32),
    np.zeros((4, 4), np.uint8),
    np.zeros((4, 4, 4), np.uint8),
])
def test_pixel_sums_rejects_non_rgb(bad):
    with pytest.raises(UsageError, match="expected"):
        pixel_sums(bad)


def test_write_load_round_trip(tmp_path):
    stats = compute_stats(PHOTO_PATHS[:3], jobs=1)
    path = write_stats(stats, tmp_path / "sub" / "stats.json")
    loaded = load_stats(path)
    for key in ("mean", "std", "eigval", "eigvec", "cov", "num_images", "num_pixels"):
        assert loaded[key] == stats[key]  # JSON floats round-trip exactly
    assert "errors" not in loaded
    assert list(loaded)[:6] == ["mean", "std", "eigval", "eigvec", "cov", "num_images"]
    assert not list(tmp_path.glob("sub/*.tmp"))


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    (json.dumps({"mean": [0, 0, 0], "std": [1, 1, 1], "eigval": [1, 1, 1]}),
     "missing key 'eigvec'"),
    (json.dumps({"mean": [0, 0], "std": [1, 1, 1], "eigval": [1, 1, 1],
                 "eigvec": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}), "'mean' has shape"),
    (json.dumps([1, 2, 3]), "expected a JSON object"),
])
def test_load_rejects_bad_files(tmp_path, content, message):
    path = tmp_path / "stats.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=message):
        load_stats(path)


def test_load_missing_file_says_how_to_make_it(tmp_path):
    with pytest.raises(UsageError, match="dataprep stats"):
        load_stats(tmp_path / "nope.json")


def test_check_stats_accepts_finalized():
    stats = finalize_stats(PixelSums() + pixel_sums(gradient(9, 7)))
    assert check_stats(stats) is stats


def test_population_covariance_by_hand():
    # Two pixels, black and white: population variance 0.25 (a sample variance would be 0.5).
    arr = np.array([[[0, 0, 0], [255, 255, 255]]], dtype=np.uint8)
    stats = finalize_stats(pixel_sums(arr))
    assert stats["mean"] == [0.5, 0.5, 0.5]
    assert stats["std"] == [0.5, 0.5, 0.5]
    assert stats["cov"] == [[0.25] * 3] * 3
    np.testing.assert_allclose(stats["eigval"], [0.75, 0, 0], atol=1e-16)
    np.testing.assert_allclose(np.asarray(stats["eigvec"])[:, 0], [3 ** -0.5] * 3)
