"""``split --group-by duplicates|near-duplicates``: the clusters ``dataprep audit`` finds, as
groups a split keeps whole (identical decoded pixels, or near-duplicate hashes of the image or
its mirror; :mod:`dataprep.jobs.audit_findings`)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from dataprep.errors import UsageError
from dataprep.records import Record

AUDIT_GROUPS = ("duplicates", "near-duplicates")


def duplicate_groups(records: list[Record], kind: str, *, jobs: int | None = None,
                     audit: str | Path | None = None) -> tuple[dict[str, str], int, int]:
    """key -> cluster id for the records in a cluster of ``kind`` (``duplicates``: identical
    pixels; ``near-duplicates``: audit's near-duplicate clusters), computed with audit's
    hashing on ``jobs`` workers; with ``audit`` (a folder ``dataprep audit`` wrote) its
    ``features.jsonl`` is reused for the files it holds unchanged, and its threshold. Returns
    the groups, the number of clusters and the images in them."""
    from dataprep.io.manifest import read_json
    from dataprep.jobs.audit_features import FEATURES_NAME, compute_features, read_features
    from dataprep.jobs.audit_findings import NEAR_THRESHOLD, near_duplicates

    if kind not in AUDIT_GROUPS:
        raise UsageError(f"--group-by {kind!r}: expected {' or '.join(AUDIT_GROUPS)}")
    cache: dict[str, Any] = {}
    threshold = NEAR_THRESHOLD
    if audit is not None:
        folder = Path(audit)
        if not (folder / FEATURES_NAME).is_file():
            raise UsageError(f"--audit {audit}: no {FEATURES_NAME} there; give the -o folder of "
                             "`dataprep audit`, or leave --audit out to hash the images now")
        cache = read_features(folder / FEATURES_NAME)
        found = read_json(folder / "audit.json", {}) or {}
        threshold = int(found.get("thresholds", {}).get("near_hamming", threshold))
    images, _, _ = compute_features(records, jobs=jobs, total=len(records), cache=cache)
    if kind == "duplicates":
        by: dict[str, list[int]] = defaultdict(list)
        for i, img in enumerate(images):
            if img.features is not None:
                by[img.features["pixels"]].append(i)
        clusters = [g for g in by.values() if len(g) > 1]
    else:
        clusters = near_duplicates(images, threshold)[1]
    out: dict[str, str] = {}
    for g in clusters:
        name = "dup-" + min(records[i].key for i in g)
        out.update({records[i].key: name for i in g})
    return out, len(clusters), sum(len(g) for g in clusters)
