"""``dataprep stats``: per-channel mean/std and the RGB covariance eigen decomposition.

Orchestration only: images are decoded and reduced to exact integer partial sums
(:func:`dataprep.ops.stats.pixel_sums`) in joblib workers, one sum per chunk of records; the
parent merges the chunk sums exactly and finalizes them. Because the merge is exact integer
addition, the result is the same, bit for bit, for any ``jobs``. The numbers (pixels in [0, 1],
population covariance) are described in :mod:`dataprep.ops.stats`; :func:`write_stats` and
:func:`load_stats` read and write them as ``stats.json``, the file PCA lighting takes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from dataprep.errors import ImageError, UsageError
from dataprep.io.decode import (
    DEFAULT_MAX_PIXELS,
    MAX_TEXT_BYTES,
    open_image,
    read_regular,
    record_bytes,
)
from dataprep.ops.resize import resize_short_side
from dataprep.ops.stats import (
    STATS_KEYS,
    PixelSums,
    check_stats,
    finalize_stats,
    merge_sums,
    pixel_sums,
)
from dataprep.records import Record, Sample

Item = Record | Sample | str | os.PathLike | bytes
ON_ERROR = ("skip", "raise")


def _resolve_jobs(jobs: int | None) -> int:
    if jobs is None or jobs == 0:
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            return os.cpu_count() or 1
    if jobs < 0:  # joblib convention: -1 = all cores
        return max(1, _resolve_jobs(None) + 1 + jobs)
    return jobs


def _describe(item: Item) -> tuple[str, str]:
    """(key, path) of an input, for error records."""
    if isinstance(item, Record):
        return item.key, item.path
    if isinstance(item, Sample):
        return item.key, ""
    if isinstance(item, bytes):
        return "", "<bytes>"
    return "", str(item)


def _open(item: Item, max_pixels: int, draft: int | None):
    if isinstance(item, Record):
        src: str | bytes = record_bytes(item)
        name = item.path or item.key
    elif isinstance(item, Sample):
        src, name = item.image, item.key
    elif isinstance(item, (bytes, str, os.PathLike)):
        src, name = (item if isinstance(item, bytes) else os.fspath(item)), ""
    else:
        raise UsageError(
            f"cannot compute statistics of a {type(item).__name__}; expected records, samples, "
            "image paths or encoded image bytes"
        )
    return open_image(src, max_pixels=max_pixels, draft_short_side=draft, name=name or None)


def sums_of_chunk(
    items: list[Item],
    max_pixels: int = DEFAULT_MAX_PIXELS,
    short_side: int | None = None,
    exact: bool = False,
) -> tuple[PixelSums, list[dict[str, str]]]:
    """Worker side: exact sums of the decodable images of ``items`` plus one error per failure.

    With ``short_side``, each image is first resized so its shorter side is ``short_side``
    (never upscaled); JPEGs then decode in draft mode unless ``exact``.
    """
    total = PixelSums()
    errors: list[dict[str, str]] = []
    draft = short_side if short_side and not exact else None
    for item in items:
        try:  # a record's unreadable file is a skip too (record_bytes raises ImageError)
            img = _open(item, max_pixels, draft)
        except ImageError as exc:
            key, path = _describe(item)
            errors.append({"key": key, "path": path, "reason": str(exc)})
            continue
        if short_side:
            img = resize_short_side(img, short_side)
        total = total.merge(pixel_sums(img))
    return total, errors


def _chunks(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _as_items(src: Any) -> Iterable[Item]:
    if isinstance(src, (str, os.PathLike)):
        # A source location (folder, list, manifest, shards), not one image.
        from dataprep.io.scan import scan

        return scan(src)
    if isinstance(src, (Record, Sample, bytes)):
        raise UsageError(
            f"compute_stats takes many images; got one {type(src).__name__}: wrap it in a list"
        )
    return src  # type: ignore[no-any-return]


def compute_stats(
    records_or_paths: Iterable[Item] | str | os.PathLike,
    *,
    jobs: int | None = 1,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    short_side: int | None = None,
    exact: bool = False,
    on_error: str = "skip",
) -> dict[str, Any]:
    """Statistics of every pixel of every image (see :mod:`dataprep.ops.stats`).

    ``records_or_paths``: records (their ``data`` bytes when set, else their ``path``), samples,
    image paths or encoded bytes; or one source location (folder, list, manifest, WebDataset,
    LMDB) which is scanned. ``jobs``: worker processes (``None``/0 = all cores, negative
    counts back from all cores as in joblib); the result does not depend on it.
    ``short_side``: resize each image first (no upscaling; JPEG draft decode unless
    ``exact``). Unusable images are skipped
    (``on_error="skip"``) or raise :class:`ImageError` (``"raise"``).

    Returns the ``stats.json`` keys (``mean``, ``std``, ``eigval``, ``eigvec``, ``cov``,
    ``num_images``, ``num_pixels``) plus ``num_skipped`` and ``errors`` (one
    ``{"key", "path", "reason"}`` per skipped image; :func:`write_stats` leaves it out).
    """
    if on_error not in ON_ERROR:
        raise UsageError(f"--on-error {on_error!r} is not supported; choose skip or raise")
    if short_side is not None and short_side <= 0:
        raise UsageError(f"--short-side {short_side} must be a positive number of pixels")
    items = _as_items(records_or_paths)
    n_jobs = _resolve_jobs(jobs)
    try:
        size = max(1, min(32, len(items) // (n_jobs * 4)))  # type: ignore[arg-type]
    except TypeError:  # a stream of unknown length
        size = 16
    parts: list[PixelSums] = []
    errors: list[dict[str, str]] = []

    def collect(result: tuple[PixelSums, list[dict[str, str]]]) -> None:
        part, errs = result
        if errs and on_error == "raise":
            raise ImageError(errs[0]["reason"])
        parts.append(part)
        errors.extend(errs)

    if n_jobs == 1:
        for chunk in _chunks(items, size):
            collect(sums_of_chunk(chunk, max_pixels, short_side, exact))
    else:
        from joblib import Parallel, delayed

        with Parallel(n_jobs=n_jobs, backend="loky", return_as="generator", batch_size=1,
                      pre_dispatch=f"{2 * n_jobs}") as parallel:
            tasks = (delayed(sums_of_chunk)(chunk, max_pixels, short_side, exact)
                     for chunk in _chunks(items, size))
            for result in parallel(tasks):
                collect(result)
    stats = finalize_stats(merge_sums(parts))
    stats["num_skipped"] = len(errors)
    stats["errors"] = errors
    return stats


def write_stats(stats: dict[str, Any], path: str | Path) -> Path:
    """Write ``stats.json`` (indented JSON; floats round-trip exactly). Returns the path.

    Every key is written except ``errors`` (which belongs in ``errors.jsonl``); the file is
    written to a temporary name and renamed, so it is always whole.
    """
    check_stats(stats, "stats")
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"-o {path} is a directory; expected a file name such as stats.json")
    ordered = {k: stats[k] for k in STATS_KEYS if k in stats}
    ordered.update({k: v for k, v in stats.items() if k not in ordered and k != "errors"})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(ordered, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def load_stats(path: str | Path) -> dict[str, Any]:
    """Read and validate a ``stats.json`` written by :func:`write_stats` (or by hand).

    Requires ``mean``, ``std``, ``eigval`` (3 numbers each) and ``eigvec`` (3x3, eigenvectors as
    columns). Raises :class:`UsageError` naming the file and the problem.
    """
    path = Path(path)
    try:
        data = read_regular(path, limit=MAX_TEXT_BYTES, error=UsageError, name=f"--stats {path}")
    except UsageError as exc:
        raise UsageError(f"{exc}; create it with `dataprep stats SRC -o stats.json`") from None
    try:
        stats = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested too deep
        raise UsageError(f"--stats {path}: not valid JSON ({type(exc).__name__}: {exc}); "
                         "expected the stats.json that `dataprep stats` writes") from None
    return check_stats(stats, f"--stats {path}")


@dataclass
class StatsResult:
    """What ``dataprep stats`` did: the statistics, where they went, the skipped images."""

    stats: dict[str, Any]
    path: str
    errors: list[dict[str, str]]
    seconds: float
    source: str

    def lines(self) -> list[str]:
        s = self.stats

        def nums(values: list[float]) -> str:
            return ", ".join(f"{v:.4f}" for v in values)

        out = [
            f"stats: {s['num_images']:,} images, {s['num_pixels']:,} pixels from {self.source} "
            f"in {self.seconds:.1f} s; {len(self.errors):,} skipped",
            f"  mean   (R, G, B)  {nums(s['mean'])}",
            f"  std    (R, G, B)  {nums(s['std'])}",
            f"  eigval            {nums(s['eigval'])}   (pixels in [0, 1])",
        ]
        if self.errors:
            out.append(f"  skipped files are listed in {Path(self.path).parent / 'errors.jsonl'}")
            out += [f"    {e['reason']}" for e in self.errors[:5]]
            if len(self.errors) > 5:
                out.append(f"    ... and {len(self.errors) - 5} more")
        out.append(f"  wrote {self.path}")
        return out


def _split_source(src: str | os.PathLike, split: str | None,
                  root: str | os.PathLike | None) -> tuple[Iterable[Record], str]:
    """The records of ``src`` (of one split when given) and a description of them."""
    from dataprep.io.scan import scan

    location = Path(src)
    if split and location.is_dir() and (location / f"{split}.jsonl").is_file():
        location = location / f"{split}.jsonl"  # the folder `dataprep split` wrote
    source = scan(location, root=root, split=split)
    if source.records is None or not split:
        return source, str(location) + (f" [{split}]" if split and source.records is None else "")
    if not any(r.split for r in source.records):
        raise UsageError(
            f"--split {split}: {src} is not split (a plain image folder or list file); give the "
            f"manifest instead, e.g. splits/{split}.jsonl, or leave out --split"
        )
    records = [r for r in source.records if r.split == split]
    if not records:
        names = sorted({r.split for r in source.records})
        raise UsageError(f"--split {split}: {src} has no records of that split; it has "
                         f"{', '.join(names)}")
    return records, f"{location} [{split}]"


def _command_of(line: str) -> object:
    """The ``command`` of an errors.jsonl line (None for a line that is not a JSON object)."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry.get("command") if isinstance(entry, dict) else None


def _write_stats_errors(folder: Path, errors: list[dict[str, str]]) -> None:
    """Replace the lines of earlier ``stats`` runs in ``folder/errors.jsonl``; keep the rest."""
    path = folder / "errors.jsonl"
    kept = []
    if path.exists():
        kept = [line for line in path.read_text(errors="replace").splitlines()
                if line.strip() and _command_of(line) != "stats"]
    if not kept and not errors:
        path.unlink(missing_ok=True)
        return
    tmp = folder / ".errors.jsonl.tmp"
    with open(tmp, "w") as f:
        for line in kept:
            f.write(line + "\n")
        for e in errors:
            f.write(json.dumps(dict(e, command="stats"), sort_keys=True) + "\n")
    os.replace(tmp, path)


def stats(src: str | os.PathLike, out: str | os.PathLike, *, split: str | None = None,
          root: str | os.PathLike | None = None, jobs: int | None = None,
          short_side: int | None = None, exact: bool = False,
          max_pixels: int = DEFAULT_MAX_PIXELS, on_error: str = "skip") -> StatsResult:
    """Compute the statistics of ``src`` (see :func:`compute_stats`) and write them to ``out``.

    ``split``: only that split's records (a manifest's, a shard folder's, or
    ``{split}.jsonl`` of a folder ``dataprep split`` wrote); PCA lighting wants the train
    split's. Skipped images are listed in ``errors.jsonl`` beside ``out`` (lines tagged
    ``"command": "stats"``; other jobs' lines there are kept).
    """
    import time

    start = time.perf_counter()
    records, description = _split_source(src, split, root)
    result = compute_stats(records, jobs=jobs, max_pixels=max_pixels, short_side=short_side,
                           exact=exact, on_error=on_error)
    path = write_stats(result, out)
    errors = result.pop("errors")
    _write_stats_errors(path.parent, errors)
    return StatsResult(result, str(path), errors, time.perf_counter() - start, description)
