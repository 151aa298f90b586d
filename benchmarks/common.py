"""Helpers shared by the benchmarks: input discovery and a table printer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FETCH = ROOT.parent / "shared" / "data" / "fetch_real_images.sh"


def real_photos(cache: Path) -> Path:
    """The labelled real photo set of fetch_real_images.sh (fetched once into ``cache``)."""
    photos = cache / "photos"
    if not (photos / ".sources.tsv").exists():
        if not FETCH.exists():
            sys.exit(f"no photo folder given and {FETCH} is missing; pass --photos DIR")
        print(f"fetching the real photo set into {photos} (once) ...", file=sys.stderr)
        subprocess.run(["bash", str(FETCH), str(photos)], check=True,
                       stdout=subprocess.DEVNULL)
    return photos


def jpeg_files(root: Path) -> list[Path]:
    files = [p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg")]
    return sorted(files)


def print_table(title: str, header: list[str], rows: list[list[object]]) -> None:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells[1:]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1
