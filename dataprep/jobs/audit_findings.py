"""The findings of ``dataprep audit``, from the features alone (pure: no I/O).

* exact duplicates: images with the same bytes (sha256), and with the same decoded pixels;
* near duplicates: pairs whose 64-bit DCT hashes (or one's and the other's mirror) differ in at
  most ``threshold`` bits *and* whose 64-bit difference hashes do too (the second hash removes
  look-alikes: a red and a green apple drawn alike share a DCT hash of the luma, not a dhash),
  grouped into clusters (union-find over the pairs; exact duplicates are at distance 0, so they
  are in the clusters too);
* leakage: the pairs of images of two different splits in those groups, and per split the
  share of its images that have a copy in another split;
* label conflicts: a pixel-identical group, or a near-duplicate cluster, whose images carry
  more than one class;
* odd images, by the thresholds of :data:`ODD_THRESHOLDS`;
* per split: class balance and size / aspect / brightness / colour / blur statistics.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from itertools import combinations
from statistics import median
from typing import Any

from dataprep.ops.hashindex import UnionFind, near_pairs

# Hamming distance (bits of 64, both hashes) up to which two images are near duplicates:
# tuned on benchmarks/audit_quality.py (330 real photos, 880 planted re-encoded, resized,
# cropped and mirrored copies): 99.0 % precision, 98.4 % recall there. At 10 bits only 79 % of
# the 3 %-crops are found (93 % at 12); at 14 unrelated clip-art drawn alike comes in (95 %).
NEAR_THRESHOLD = 12

ODD_THRESHOLDS: dict[str, float] = {
    "min_side": 32,  # tiny: shorter side below this many pixels
    "max_aspect": 3.0,  # extreme aspect: longer side over this many times the shorter
    "min_std": 4.0,  # near-constant: luma standard deviation below this (0..255)
    "dark": 30.0,  # very dark: mean luma below this
    "bright": 225.0,  # very bright: mean luma above this
    "gray_chroma": 2.0,  # grayscale: mean max(R,G,B) - min(R,G,B) below this...
    "color_share": 0.5,  # ... reported only when more than this share of the set is colour
    "blur": 20.0,  # blurry: variance of the Laplacian (at 256 px short side) below this
}
ODD_KINDS = ("tiny", "extreme_aspect", "near_constant", "dark", "bright", "grayscale",
             "blurry")


def _hex(value: str) -> int:
    return int(value, 16)


def _groups_by(images: Sequence[Any], field: str) -> list[list[int]]:
    by: dict[str, list[int]] = defaultdict(list)
    for i, img in enumerate(images):
        if img.features is not None:
            by[img.features[field]].append(i)
    return sorted((g for g in by.values() if len(g) > 1), key=lambda g: g[0])


def _group_entry(images: Sequence[Any], members: list[int], **extra: Any) -> dict[str, Any]:
    splits = sorted({images[i].split for i in members})
    classes = sorted({images[i].class_name for i in members})
    return {"size": len(members), "splits": splits, "classes": classes,
            "across_splits": len(splits) > 1, **extra,
            "members": [dict(images[i].describe(), index=i) for i in members]}


def _cross_pairs(images: Sequence[Any], pairs: list[tuple[int, int]]) -> Counter:
    out: Counter = Counter()
    for i, j in pairs:
        a, b = images[i].split, images[j].split
        if a != b:
            out["|".join(sorted((a, b)))] += 1
    return out


def _group_pairs(groups: list[list[int]]) -> list[tuple[int, int]]:
    return [(i, j) for g in groups for i, j in combinations(g, 2)]


def near_duplicates(images: Sequence[Any], threshold: int) -> tuple[list[tuple[int, int, int]],
                                                                      list[list[int]]]:
    """(pairs ``(i, j, distance)``, clusters) of the near duplicates among ``images`` (indexes
    into ``images``; skipped images take part in nothing)."""
    usable = [i for i, img in enumerate(images) if img.features is not None]
    hashes = [_hex(images[i].features["phash"]) for i in usable]
    mirrors = [_hex(images[i].features["phash_mirror"]) for i in usable]
    dh = [_hex(images[i].features["dhash"]) for i in usable]
    dm = [_hex(images[i].features["dhash_mirror"]) for i in usable]
    pairs = [(usable[a], usable[b], d) for a, b, d in near_pairs(hashes, mirrors, threshold)
             if _symmetric(dh, dm, a, b) <= threshold]
    uf = UnionFind(len(images))
    for i, j, _ in pairs:
        uf.union(i, j)
    return pairs, uf.groups()


def _symmetric(h: list[int], m: list[int], a: int, b: int) -> int:
    """The pair's distance: the closest of the two hashes and each against the other's
    mirror."""
    return min((h[a] ^ h[b]).bit_count(), (h[a] ^ m[b]).bit_count(), (m[a] ^ h[b]).bit_count())


def _leakage(images: Sequence[Any], exact_groups: list[list[int]],
             near_groups: list[list[int]], near: list[tuple[int, int, int]]) -> dict[str, Any]:
    """Pairs across splits (exact: pixel-identical; near: within the threshold, exact ones
    included) and per split the images that have a copy in another split."""
    exact_pairs = _cross_pairs(images, _group_pairs(exact_groups))
    near_pairs_ = _cross_pairs(images, [(i, j) for i, j, _ in near])
    names = sorted({img.split for img in images}, key=split_sort)
    pairs = {"|".join(sorted(p)): {"exact": exact_pairs["|".join(sorted(p))],
                                   "near": near_pairs_["|".join(sorted(p))]}
             for p in combinations(names, 2)}
    leaked: dict[str, dict[str, set[int]]] = {n: {"exact": set(), "near": set()} for n in names}
    for kind, groups in (("exact", exact_groups), ("near", near_groups)):
        for g in groups:
            if len({images[i].split for i in g}) > 1:
                for i in g:
                    leaked[images[i].split][kind].add(i)
    sizes = Counter(img.split for img in images)
    per_split = {n: {"images": sizes[n], "leaked_exact": len(leaked[n]["exact"]),
                     "leaked_near": len(leaked[n]["near"]),
                     "share_exact": round(len(leaked[n]["exact"]) / max(sizes[n], 1), 4),
                     "share_near": round(len(leaked[n]["near"]) / max(sizes[n], 1), 4)}
                 for n in names}
    return {"pairs": pairs, "splits": per_split}


def split_sort(name: str) -> tuple[int, str]:
    order = ("train", "val", "test")
    return (order.index(name) if name in order else len(order), name)


def odd_images(images: Sequence[Any], thresholds: dict[str, float]) -> dict[str, list[int]]:
    """Indexes of the odd images of each kind (:data:`ODD_KINDS`)."""
    t = thresholds
    usable = [(i, img.features) for i, img in enumerate(images) if img.features is not None]
    gray = [i for i, f in usable if f["chroma"] < t["gray_chroma"]]
    colour_share = 1 - len(gray) / max(len(usable), 1)
    out: dict[str, list[int]] = {k: [] for k in ODD_KINDS}
    for i, f in usable:
        short, long = sorted((f["width"], f["height"]))
        constant = f["std"] < t["min_std"]
        checks = {
            "tiny": short < t["min_side"],
            "extreme_aspect": long > t["max_aspect"] * short,
            "near_constant": constant,
            "dark": f["mean"] < t["dark"],
            "bright": f["mean"] > t["bright"],
            "grayscale": colour_share > t["color_share"] and f["chroma"] < t["gray_chroma"],
            "blurry": not constant and f["blur"] < t["blur"],
        }
        for kind, hit in checks.items():
            if hit:
                out[kind].append(i)
    return out


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {"min": round(min(values), 3), "median": round(median(values), 3),
            "mean": round(sum(values) / len(values), 3), "max": round(max(values), 3)}


def split_stats(images: Sequence[Any], thresholds: dict[str, float]) -> dict[str, Any]:
    """Per split: images, skipped, class counts, and size / aspect / colour statistics."""
    out: dict[str, Any] = {}
    by_split: dict[str, list[Any]] = defaultdict(list)
    for img in images:
        by_split[img.split].append(img)
    for name in sorted(by_split, key=split_sort):
        members = by_split[name]
        feats = [m.features for m in members if m.features is not None]
        out[name] = {
            "images": len(members), "skipped": len(members) - len(feats),
            "classes": dict(sorted(Counter(m.class_name for m in members).items())),
            "width": _stats([f["width"] for f in feats]),
            "height": _stats([f["height"] for f in feats]),
            "aspect": _stats([f["width"] / f["height"] for f in feats]),
            "brightness": _stats([f["mean"] for f in feats]),
            "contrast": _stats([f["std"] for f in feats]),
            "colorfulness": _stats([f["colorfulness"] for f in feats]),
            "grayscale_share": round(sum(f["chroma"] < thresholds["gray_chroma"] for f in feats)
                                     / max(len(feats), 1), 4),
            "blur": _stats([f["blur"] for f in feats]),
        }
    return out


def find(images: Sequence[Any], *, threshold: int = NEAR_THRESHOLD,
         thresholds: dict[str, float] | None = None) -> dict[str, Any]:
    """Every finding, as the JSON-ready dict ``audit.json`` holds (see the module docstring).
    ``images``: :class:`dataprep.jobs.audit_features.Audited` (split, class, features or None)."""
    t = dict(ODD_THRESHOLDS)
    for key, value in (thresholds or {}).items():
        if key not in t:
            from dataprep.errors import UsageError

            raise UsageError(f"unknown odd-image threshold {key!r}; expected one of "
                             f"{', '.join(t)}")
        t[key] = value
    byte_groups = _groups_by(images, "sha256")
    pixel_groups = _groups_by(images, "pixels")
    near, clusters = near_duplicates(images, threshold)
    distance = {(i, j): d for i, j, d in near}
    conflicts = []
    exact_conflict_sets = []
    for g in pixel_groups:
        if len({images[i].class_name for i in g}) > 1:
            conflicts.append(_group_entry(images, g, kind="exact"))
            exact_conflict_sets.append(set(g))
    for g in clusters:
        if len({images[i].class_name for i in g}) > 1 and not any(
                set(g) <= s for s in exact_conflict_sets):
            conflicts.append(_group_entry(images, g, kind="near"))
    cluster_entries = []
    for g in clusters:
        inner = [distance[(i, j)] for i, j in combinations(g, 2) if (i, j) in distance]
        exact = len({images[i].features["pixels"] for i in g}) == 1
        cluster_entries.append(_group_entry(images, g, max_distance=max(inner, default=0),
                                            exact=exact))
    odd = odd_images(images, t)
    skipped = sum(img.features is None for img in images)
    return {
        "images": len(images), "skipped": skipped,
        "thresholds": {"near_hamming": threshold, "hash_bits": 64, "hash": "DCT hash (32x32 luma, "
                       "8x8 lowest frequencies) and difference hash (9x8 luma) of each image and "
                       "its mirror", **t},
        "splits": split_stats(images, t),
        "exact_duplicates": {
            "bytes": [_group_entry(images, g) for g in byte_groups],
            "pixels": [_group_entry(images, g) for g in pixel_groups
                       if len({images[i].features["sha256"] for i in g}) > 1],
        },
        "near_duplicates": {"pairs": len(near), "clusters": cluster_entries,
                            "images": sum(len(g) for g in clusters)},
        "leakage": _leakage(images, pixel_groups, clusters, near),
        "label_conflicts": conflicts,
        "odd": {kind: [dict(images[i].describe(), index=i, **_why(images[i].features, kind))
                       for i in idx] for kind, idx in odd.items()},
    }


def _why(f: dict[str, Any], kind: str) -> dict[str, Any]:
    """The measure that made an image odd, for the report."""
    return {
        "tiny": {"size": f"{f['width']}x{f['height']}"},
        "extreme_aspect": {"aspect": round(max(f["width"], f["height"])
                                           / min(f["width"], f["height"]), 2)},
        "near_constant": {"std": f["std"]},
        "dark": {"brightness": f["mean"]},
        "bright": {"brightness": f["mean"]},
        "grayscale": {"chroma": f["chroma"]},
        "blurry": {"blur": f["blur"]},
    }[kind]
