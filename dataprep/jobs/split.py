"""``split``: stratified, seeded train/val(/test) split.

Per class, units (records, or groups of records with ``--group-by``) are ranked by a seeded
stable hash of their id, so the result depends only on the set of records and the seed, never
on input order. The first ``round(ratio * n)`` go to train, the next ``round(test_ratio * n)``
to test (taken from the end of the ranking), the rest to val; every class with at least two
images keeps at least one in train and one in val (and one in test when asked and possible).

``--group-by duplicates`` / ``near-duplicates`` groups by the clusters ``dataprep audit``
finds (identical pixels / near-duplicate hashes, :mod:`dataprep.jobs.audit_findings`): each
cluster goes whole to one split, also when its images carry different classes (the first
class, in label order, decides), so no copy of an image leaks across splits. Each class's
counts are then exact as far as its clusters allow; the output says how far.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _quote
from operator import attrgetter
from pathlib import Path
from typing import Any

from dataprep.errors import UsageError
from dataprep.io import durable
from dataprep.io.manifest import write_json_atomic
from dataprep.io.scan import scan
from dataprep.jobs.output import OutputFolder
from dataprep.jobs.split_groups import AUDIT_GROUPS, duplicate_groups
from dataprep.ops.rng import stable_rank
from dataprep.records import Record, gc_paused


@dataclass
class SplitResult:
    splits: dict[str, list[Record]]
    classes: list[str]
    table: list[dict] = field(default_factory=list)  # per class: class, total, train, val, test
    warnings: list[str] = field(default_factory=list)
    out_dir: str = ""
    notes: list[str] = field(default_factory=list)  # e.g. the per-class table of --balance

    def lines(self) -> list[str]:
        names = [s for s in ("train", "val", "test") if s in self.splits]
        width = max([len("class")] + [len(r["class"]) for r in self.table])
        head = f"{'class':<{width}}  {'total':>7}" + "".join(f"  {n:>7}" for n in names)
        out = [head, "-" * len(head)]
        for row in self.table + [self._total_row(names)]:
            out.append(f"{row['class']:<{width}}  {row['total']:>7,}"
                       + "".join(f"  {row[n]:>7,}" for n in names))
        out += self.notes
        out += [f"warning: {w}" for w in self.warnings]
        if self.out_dir:
            out.append(f"wrote {', '.join(n + '.jsonl' for n in names)} and classes.json "
                       f"to {self.out_dir}")
        return out

    def _total_row(self, names: list[str]) -> dict:
        row = {"class": "all", "total": sum(r["total"] for r in self.table)}
        row.update({n: sum(r[n] for r in self.table) for n in names})
        return row


def _counts(n: int, ratio: float, test_ratio: float) -> tuple[int, int, int]:
    """(train, val, test) unit counts for a class of ``n`` units."""
    if n <= 1:
        return n, 0, 0
    n_test = round(test_ratio * n) if test_ratio > 0 else 0
    if test_ratio > 0 and n >= 3:
        n_test = max(1, n_test)
    n_test = min(n_test, n - 2)
    n_train = max(1, min(round(ratio * n), n - n_test - 1))
    return n_train, n - n_train - n_test, n_test


def group_of(record: Record, pattern: re.Pattern | None) -> str:
    if pattern is None:
        return record.key
    m = pattern.search(record.path) or pattern.search(record.key)
    if not m:
        return record.key  # no match: the record is its own group
    return m.group(1) if m.groups() else m.group(0)


_key = attrgetter("key")


def manifest_line(r: Record) -> str:
    """``json.dumps(r.to_json(), sort_keys=True)`` plus a newline, written out by hand because a
    million-record split spends most of its time here otherwise."""
    group = "" if r.group is None else f', "group": {_quote(r.group)}'
    return (f'{{"class_name": {_quote(r.class_name)}{group}, "key": {_quote(r.key)}, '
            f'"label": {int(r.label)}, "path": {_quote(r.path)}, "split": {_quote(r.split)}}}\n')


@gc_paused()
def split_records(records: list[Record], ratio: float = 0.8, test_ratio: float = 0.0,
                  seed: int = 0, per_class_limit: int | None = None,
                  group_by: str | None = None,
                  groups_of: dict[str, str] | None = None) -> dict[str, list[Record]]:
    """Assign every record to train / val (/ test). Pure: no I/O. See the module docstring.

    ``groups_of``: key -> group, instead of a ``group_by`` pattern (the clusters of
    :func:`duplicate_groups`); a group found in several classes goes to one split, the one
    the first of those classes (in label order) gave it; records get their group."""
    _check_ratios(ratio, test_ratio)
    fixed: dict[str, str] | None = None  # groups_of: group -> the split it went to
    if groups_of is not None:
        fixed, group_by = {}, None
    try:
        pattern = re.compile(group_by) if group_by else None
    except re.error as exc:
        raise UsageError(f"--group-by {group_by!r} is not a regular expression ({exc})") from None
    by_class: dict[int, list[Record]] = defaultdict(list)
    for r in records:
        by_class[r.label].append(r)
    out: dict[str, list[Record]] = {"train": [], "val": []}
    if test_ratio > 0:
        out["test"] = []
    for label in sorted(by_class):
        members = _members(by_class[label], per_class_limit, seed)
        counts = _counts(len(members), ratio, test_ratio)
        if pattern is None and fixed is None:  # every record is its own group (unique keys)
            _place_records(out, members, counts, seed)
            continue
        groups: dict[str, list[Record]] = defaultdict(list)
        for r in members:
            groups[groups_of.get(r.key, r.key) if groups_of is not None
                   else group_of(r, pattern)].append(r)
        _place_groups(out, groups, counts, seed, fixed, groups_of)
    if fixed is not None:
        for name in out:
            out[name].sort(key=lambda r: (r.label, r.key))
    if pattern is not None:
        for name in out:
            out[name].sort(key=lambda r: (r.label, r.key))
        _check_groups(out, pattern)
    return out


def _check_ratios(ratio: float, test_ratio: float) -> None:
    if not 0 < ratio < 1:
        raise UsageError(f"--ratio must be between 0 and 1 (exclusive), got {ratio}")
    if test_ratio < 0 or ratio + test_ratio >= 1:
        raise UsageError(f"--ratio {ratio} + --test-ratio {test_ratio} must stay below 1 so "
                         "that val keeps some images")


def _members(records: list[Record], per_class_limit: int | None, seed: int) -> list[Record]:
    """A class's records sorted by key; with ``per_class_limit``, a seeded sample of them."""
    members = sorted(records, key=_key)
    if per_class_limit is not None:
        members = sorted(members, key=lambda r: (stable_rank(seed + 1_000_003, r.key), r.key))
        members = sorted(members[:per_class_limit], key=lambda r: r.key)
    return members


def _place_records(out: dict[str, list[Record]], members: list[Record],
                   counts: tuple[int, int, int], seed: int) -> None:
    """One class whose every record is its own group: the first ``n_train`` by seeded rank
    to train, the next ``n_val`` to val, the rest to test."""
    n_train, n_val, _ = counts
    # members are sorted by key and sorted() is stable: equal ranks keep key order
    ranked_records = sorted(members, key=lambda r: stable_rank(seed, r.key))
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val),
              "test": (n_train + n_val, len(members))}
    for name, (lo, hi) in bounds.items():
        if name in out:  # classes come in label order: each block sorted by key
            out[name].extend(Record(r.key, r.path, r.label, r.class_name, name, r.group)
                             for r in sorted(ranked_records[lo:hi], key=_key))


def _place_groups(out: dict[str, list[Record]], groups: dict[str, list[Record]],
                  counts: tuple[int, int, int], seed: int, fixed: dict[str, str] | None,
                  groups_of: dict[str, str] | None) -> None:
    """One class's groups, whole, to the splits (see :func:`_cut`); ``fixed`` learns where
    each group went."""
    ranked = sorted(groups, key=lambda g: (stable_rank(seed, g), g))
    for name, gs in _cut(groups, ranked, counts, fixed).items():
        if fixed is not None:
            fixed.update(dict.fromkeys(gs, name))
        if gs and name in out:
            out[name].extend(Record(r.key, r.path, r.label, r.class_name, name,
                                    r.group if groups_of is None else groups_of.get(r.key))
                             for g in gs for r in groups[g])


def _cut(groups: dict[str, list[Record]], ranked: list[str], counts: tuple[int, int, int],
         fixed: dict[str, str] | None) -> dict[str, list[str]]:
    """split -> its groups: whole groups in ``ranked`` order, greedily until each split
    reaches its record count; a group ``fixed`` by an earlier class stays in its split."""
    n_train, n_val, n_test = counts
    cut: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    targets = {"train": n_train, "val": n_val, "test": n_test}
    filled = dict.fromkeys(targets, 0)
    if fixed:  # a cluster placed by an earlier class stays in its split
        for g in ranked:
            if g in fixed:
                cut[fixed[g]].append(g)
                filled[fixed[g]] += len(groups[g])
        ranked = [g for g in ranked if g not in fixed]
    for i, g in enumerate(ranked):
        name = next((s for s in ("train", "val", "test") if filled[s] < targets[s]),
                    "train")
        # a big early group must not starve a later split: when the splits still
        # without a group need every remaining group, this one goes to the first of them
        starved = [s for s in ("train", "val", "test") if targets[s] and not cut[s]]
        if cut[name] and starved and len(starved) >= len(ranked) - i:
            name = starved[0]
        cut[name].append(g)
        filled[name] += len(groups[g])
    return cut


def _check_groups(out: dict[str, list[Record]], pattern: re.Pattern) -> None:
    seen: dict[str, str] = {}
    for name, recs in out.items():
        for r in recs:
            g = group_of(r, pattern)
            if seen.setdefault(g, name) != name:
                raise UsageError(
                    f"--group-by: group {g!r} spans several classes and would leak across splits; "
                    "use a pattern whose groups stay inside one class"
                )


def split(src: str | Path, out: str | Path, *, ratio: float = 0.8, test_ratio: float = 0.0,
          seed: int = 0, per_class_limit: int | None = None, group_by: str | None = None,
          root: str | Path | None = None, overwrite: bool = False,
          balance: str | None = None, jobs: int | None = None,
          audit: str | Path | None = None, dry_run: bool = False) -> SplitResult:
    """Split ``src`` and write ``train.jsonl``, ``val.jsonl`` (``test.jsonl``), ``classes.json``.

    ``group_by``: a regular expression, or ``duplicates`` / ``near-duplicates`` (audit's
    clusters, hashed on ``jobs`` workers or read from the ``audit`` folder; see the module
    docstring).

    ``balance`` (``"oversample"`` or ``"undersample"``) then balances the classes of the train
    split only (:mod:`dataprep.jobs.balance`; seeded by ``seed``); val and test stay as split.
    ``dry_run``: the table only, nothing written.
    """
    source = scan(src, root=root, packed=False)  # every record is held and regrouped
    if source.records is None:
        raise UsageError(f"{src} is a shard source; split works on image folders, list files "
                         "and manifests")
    if per_class_limit is not None and per_class_limit < 1:
        raise UsageError(f"--per-class-limit must be at least 1, got {per_class_limit}")
    notes: list[str] = []
    if audit is not None and group_by not in AUDIT_GROUPS:
        raise UsageError("--audit DIR is read by --group-by duplicates or near-duplicates only")
    if group_by in AUDIT_GROUPS:
        groups_of, n_clusters, n_images = duplicate_groups(list(source.records), group_by,
                                                           jobs=jobs, audit=audit)
        splits = split_records(source.records, ratio, test_ratio, seed, per_class_limit,
                               groups_of=groups_of)
        notes = _cluster_notes(source.records, splits, group_by, n_clusters, n_images, ratio,
                               test_ratio, per_class_limit)
    else:
        splits = split_records(source.records, ratio, test_ratio, seed, per_class_limit,
                               group_by)
    if balance:
        from dataprep.jobs.balance import balance as balance_records
        from dataprep.jobs.balance import balance_lines

        before = splits["train"]
        splits["train"] = balance_records(before, balance, seed)
        splits["train"].sort(key=lambda r: (r.label, r.key))
        notes += balance_lines(before, splits["train"], balance)
        if balance == "oversample":
            notes.append("total counts distinct images; train counts include the copies")
    out_dir = Path(out)
    OutputFolder(out_dir).check_target()
    if dry_run:  # the table, nothing written (a split that would be refused is refused)
        _manifests(out_dir, splits, overwrite)
        return _result(splits, source.classes, notes, per_class_limit, "")
    with OutputFolder(out_dir).locked():  # one split at a time writes into a folder
        return _write_split(out_dir, splits, source, src, overwrite, notes, ratio=ratio,
                            test_ratio=test_ratio, seed=seed, per_class_limit=per_class_limit,
                            group_by=group_by, balance=balance)


def _cluster_notes(records: list[Record], splits: dict[str, list[Record]], kind: str,
                   n_clusters: int, n_images: int, ratio: float, test_ratio: float,
                   per_class_limit: int | None) -> list[str]:
    """How far each class's counts are from what was asked, once clusters stay whole."""
    names = list(splits)
    got = {n: Counter(r.class_name for r in recs) for n, recs in splits.items()}
    sizes = Counter(r.class_name for r in records)
    lines = [f"--group-by {kind}: {n_clusters:,} clusters ({n_images:,} images) kept whole, "
             "each in one split"]
    off = []
    for name in sorted(sizes, key=lambda c: min(r.label for r in records if r.class_name == c)):
        n = sizes[name] if per_class_limit is None else min(sizes[name], per_class_limit)
        want = dict(zip(("train", "val", "test"), _counts(n, ratio, test_ratio), strict=True))
        have = {s: got[s][name] for s in names}
        if any(want[s] != have[s] for s in names):
            off.append(f"  {name}: requested " + ", ".join(f"{s} {want[s]}" for s in names)
                       + "; got " + ", ".join(f"{s} {have[s]}" for s in names))
    if off:
        lines.append(f"{len(off):,} classes differ from the requested counts (clusters are "
                     "not cut):")
        lines += off
    else:
        lines.append("every class got exactly the requested counts")
    return lines


def _write_split(out_dir: Path, splits: dict[str, list[Record]], source: Any, src: str | Path,
                 overwrite: bool, notes: list[str], *, ratio: float, test_ratio: float,
                 seed: int, per_class_limit: int | None, group_by: str | None,
                 balance: str | None) -> SplitResult:
    """Write the manifests, classes.json and the split's dataprep.json (under the lock)."""
    names = list(splits)
    text = _manifests(out_dir, splits, overwrite)
    for name in names:
        durable.write_atomic(out_dir / f"{name}.jsonl", text[name].encode("utf-8",
                                                                         "surrogatepass"))
    write_json_atomic(out_dir / "classes.json", {c: i for i, c in enumerate(source.classes)})
    write_json_atomic(out_dir / "dataprep.json", {
        "command": "split",
        "params": {"src": str(src), "ratio": ratio, "test_ratio": test_ratio, "seed": seed,
                   "per_class_limit": per_class_limit, "group_by": group_by,
                   **({"balance": balance} if balance else {})},
        "counts": {n: len(r) for n, r in splits.items()},
        "classes": source.classes,
    })
    return _result(splits, source.classes, notes, per_class_limit, str(out_dir))


def _manifests(out_dir: Path, splits: dict[str, list[Record]], overwrite: bool
               ) -> dict[str, str]:
    """Each split's manifest text; an earlier, different split in ``out_dir`` is refused
    unless ``overwrite`` (a rerun that gives the same manifests is no conflict, so `dataprep
    run` can resume)."""
    text = {n: "".join(manifest_line(r) for r in recs) for n, recs in splits.items()}
    existing = [n for n in splits if (out_dir / f"{n}.jsonl").exists()]
    same = all((out_dir / f"{n}.jsonl").is_file()
               and (out_dir / f"{n}.jsonl").read_text() == text[n] for n in splits)
    if existing and not overwrite and not same:
        raise UsageError(f"{out_dir} already holds a split; pass --overwrite to replace it")
    return text


def _result(splits: dict[str, list[Record]], classes: list[str], notes: list[str],
            per_class_limit: int | None, out_dir: str) -> SplitResult:
    """The split's table (per class: distinct images, then each split's count) and warnings;
    ``out_dir``: where it was written ("" for a dry run)."""
    names = list(splits)
    result = SplitResult(splits, classes, out_dir=out_dir, notes=notes)
    per_class = {n: Counter(r.label for r in splits[n]) for n in names}
    # distinct images: --balance oversample lists some train images more than once
    distinct = Counter(label for label, _ in {(r.label, r.path or r.key)
                                             for recs in splits.values() for r in recs})
    for label, class_name in enumerate(classes):
        row = {"class": class_name}
        row.update({n: per_class[n][label] for n in names})
        row["total"] = distinct[label]
        result.table.append(row)
        if row["total"] == 1:
            result.warnings.append(f"class {class_name!r} has a single image; it goes to "
                                   "train only")
        elif row["total"] == 0 and per_class_limit is None:
            result.warnings.append(f"class {class_name!r} has no images")
    return result
