"""Class balance: oversample small classes or undersample large ones, per split (pure, seeded).

Within a split, every class is brought to the same count: the largest class's
(``oversample``) or the smallest's (``undersample``). A class of ``n`` records reaching
``target`` repeats each record ``target // n`` times, and one more time for the first
``target % n`` records of a seeded stable ranking of keys; so undersampling keeps a seeded
choice of ``target`` records, and oversampling spreads the duplicates as evenly as possible.
The result depends only on the records and the seed, not on their order.

Repetition ``r >= 1`` of record ``key`` is a new record ``{key}_r{r}`` (same image, label and
split) whose ``meta`` holds ``repeat_of`` and ``repeat``; it follows its original in the
output order. Per-sample randomness (jitter, augmentation) derives from the key, so the
repetitions of an image are augmented differently.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import replace

from dataprep.errors import UsageError
from dataprep.ops.rng import stable_rank
from dataprep.records import Record

MODES = ("oversample", "undersample")


def repeat_counts(records: list[Record], mode: str, seed: int = 0,
                  default_split: str = "train") -> list[int]:
    """How many times each record (by index) appears after balancing; 0 means dropped."""
    if mode not in MODES:
        raise UsageError(f"--balance {mode!r}: expected one of {', '.join(MODES)}")
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        groups[(r.split or default_split, r.label)].append(i)
    sizes: dict[str, list[int]] = defaultdict(list)
    for (split, _), members in groups.items():
        sizes[split].append(len(members))
    pick = max if mode == "oversample" else min
    targets = {split: pick(ns) for split, ns in sizes.items()}
    counts = [0] * len(records)
    for (split, _), members in groups.items():
        # a salt of its own, so the choice is not the ranking `split` already used
        ranked = sorted(members, key=lambda i: (stable_rank(seed, f"balance\x00{records[i].key}"),
                                                records[i].key, i))
        each, extra = divmod(targets[split], len(ranked))
        for position, i in enumerate(ranked):
            counts[i] = each + (1 if position < extra else 0)
    return counts


def balance(records: list[Record], mode: str | None, seed: int = 0,
            default_split: str = "train") -> list[Record]:
    """Balance the classes of each split (see the module docstring); ``None``: unchanged.

    Keeps the input order (dropped records leave gaps; repetitions follow their original).
    Raises :class:`UsageError` when a repetition's key would collide with an existing key.
    """
    if not mode:
        return list(records)
    counts = repeat_counts(records, mode, seed, default_split)
    out: list[Record] = []
    for record, n in zip(records, counts, strict=True):
        for r in range(n):
            if r == 0:
                out.append(record)
                continue
            meta = dict(record.meta or {}, repeat_of=record.key, repeat=r)
            out.append(replace(record, key=f"{record.key}_r{r}", meta=meta))
    seen = Counter((r.split or default_split, r.key) for r in out)
    clash = sorted(key for (_, key), c in seen.items() if c > 1)
    if clash:
        raise UsageError(f"--balance {mode}: repeated records would take existing keys "
                         f"({', '.join(clash[:3])}); rename those images or balance without them")
    return out


def class_counts(records: list[Record], default_split: str = "train") -> dict[str, Counter]:
    """split -> Counter of class names."""
    out: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        out[r.split or default_split][r.class_name] += 1
    return dict(out)


def balance_lines(before: list[Record], after: list[Record], mode: str,
                  default_split: str = "train") -> list[str]:
    """A per-class table of counts before and after balancing, one block per split."""
    was, now = class_counts(before, default_split), class_counts(after, default_split)
    lines = []
    for split in sorted(was):
        names = sorted(was[split])
        width = max([len("class")] + [len(c) for c in names])
        lines.append(f"balance ({mode}), {split}: {'class':<{width}}  {'before':>7}  "
                     f"{'after':>7}")
        pad = " " * len(f"balance ({mode}), {split}: ")
        for c in names:
            lines.append(f"{pad}{c:<{width}}  {was[split][c]:>7,}  {now[split].get(c, 0):>7,}")
        lines.append(f"{pad}{'all':<{width}}  {sum(was[split].values()):>7,}  "
                     f"{sum(now[split].values()):>7,}")
    return lines
