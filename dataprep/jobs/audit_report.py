"""What ``dataprep audit`` writes: ``audit.json``, ``report.md``, contact sheets, errors.

Every file is written whole or not at all (:func:`dataprep.io.durable.write_atomic`). The
sheets use :func:`dataprep.jobs.preview.contact_sheet`: one row per cluster / pair / class,
each row's label naming the split and class of its images in order.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from dataprep.io import durable
from dataprep.io.manifest import write_json_atomic

CELL = 96  # thumbnail side of the sheets, pixels
MAX_ROWS = 24  # rows a sheet shows at most (the report lists everything)
MAX_COLUMNS = 8  # images a row shows at most
MIN_COLUMNS = 5  # a sheet is at least this many cells wide
LIST_MAX = 20  # entries per finding the report lists (audit.json holds all)
ERRORS_NAME = "audit-errors.jsonl"  # not errors.jsonl: the shard verbs' list
SHEETS = ("clusters.png", "leakage.png", "odd.png", "drift.png")


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def summary_lines(f: dict[str, Any]) -> list[str]:
    """A few lines for the terminal."""
    exact = f["exact_duplicates"]
    near = f["near_duplicates"]
    out = [f"  exact duplicates: {len(exact['bytes']):,} groups of identical files, "
           f"{len(exact['pixels']):,} more of identical pixels",
           f"  near duplicates (<= {f['thresholds']['near_hamming']} bits of 64): "
           f"{len(near['clusters']):,} clusters, {near['images']:,} images"]
    leak = f["leakage"]
    for name, s in leak["splits"].items():
        if len(leak["splits"]) > 1:
            out.append(f"  leakage {name}: {s['leaked_near']:,} of {s['images']:,} images "
                       f"({_pct(s['share_near'])}) have a copy in another split "
                       f"({s['leaked_exact']:,} exact)")
    out.append(f"  label conflicts: {len(f['label_conflicts']):,}")
    odd = ", ".join(f"{k} {len(v)}" for k, v in f["odd"].items() if v) or "none"
    out.append(f"  odd images: {odd}")
    if "drift" in f and f["drift"].get("splits"):
        for name, s in f["drift"]["splits"].items():
            out.append(f"  drift {name}: score {s['score']:.2f} (1 = like {f['drift']['reference']}"
                       f"), {_pct(s['far_share'])} beyond the reference's 95th percentile")
    return out


def _who(m: dict[str, Any]) -> str:
    return f"{m['split']}/{m['class']}"


def _members(m: list[dict[str, Any]]) -> str:
    return ", ".join(f"`{x['path'] or x['key']}` ({_who(x)})" for x in m)


def report_md(f: dict[str, Any], errors: Sequence[dict[str, Any]], sheets: list[str]) -> str:
    """The human report: every finding with counts, thresholds and (up to ``LIST_MAX``) files."""
    t = f["thresholds"]
    lines = ["# Dataset audit", "",
             f"{f['images'] - f['skipped']:,} images audited of {f['images']:,} inputs "
             f"({f['skipped']:,} skipped, listed in {ERRORS_NAME}); "
             f"splits: {', '.join(f['splits'])}.", ""]
    lines += _split_table(f)
    lines += ["## Exact duplicates", "",
              f"{len(f['exact_duplicates']['bytes']):,} groups of files with the same bytes "
              f"(sha256); {len(f['exact_duplicates']['pixels']):,} more groups whose files "
              "differ but whose decoded pixels are the same.", ""]
    for g in (f["exact_duplicates"]["bytes"] + f["exact_duplicates"]["pixels"])[:LIST_MAX]:
        lines.append(f"- {g['size']} images{' **across splits**' if g['across_splits'] else ''}"
                     f": {_members(g['members'])}")
    near = f["near_duplicates"]
    lines += ["", "## Near duplicates", "",
              f"Two images are near duplicates when both their {t['hash']} differ in at "
              f"most **{t['near_hamming']} of 64 bits** (re-encoded, resized, slightly cropped or "
              f"mirrored copies). {near['pairs']:,} pairs, grouped into "
              f"{len(near['clusters']):,} clusters of {near['images']:,} images "
              "(a cluster joins every image linked by a pair).", ""]
    for g in near["clusters"][:LIST_MAX]:
        kind = "identical pixels" if g["exact"] else f"max distance {g['max_distance']}"
        lines.append(f"- {g['size']} images ({kind})"
                     f"{' **across splits**' if g['across_splits'] else ''}: "
                     f"{_members(g['members'])}")
    lines += ["", *_leakage_md(f), "## Label conflicts", "",
              f"{len(f['label_conflicts']):,} groups of the same image under more than one "
              "class (exact: identical pixels; near: a near-duplicate cluster).", ""]
    for g in f["label_conflicts"][:LIST_MAX]:
        lines.append(f"- {g['kind']}: classes {', '.join(g['classes'])}: "
                     f"{_members(g['members'])}")
    lines += ["", *_odd_md(f)]
    if "drift" in f:
        lines += _drift_md(f["drift"])
    if sheets:
        lines += ["## Contact sheets", ""] + [f"- [{s}]({s})" for s in sheets] + [""]
    if errors:
        lines += ["## Skipped", "", f"{len(errors):,} inputs could not be read:", ""]
        lines += [f"- {e.get('reason', '')}" for e in errors[:LIST_MAX]] + [""]
    return "\n".join(lines) + "\n"


def _split_table(f: dict[str, Any]) -> list[str]:
    splits = f["splits"]
    names = list(splits)
    classes = sorted({c for s in splits.values() for c in s["classes"]})
    out = ["## Splits side by side", "", "| | " + " | ".join(names) + " |",
           "|---|" + "---|" * len(names), "| images | " + " | ".join(
               f"{splits[n]['images']:,}" for n in names) + " |"]
    for c in classes:
        row = []
        for n in names:
            k, total = splits[n]["classes"].get(c, 0), max(splits[n]["images"], 1)
            row.append(f"{k:,} ({_pct(k / total)})")
        out.append(f"| class {c} | " + " | ".join(row) + " |")

    def stat(field: str, key: str, fmt: str) -> str:
        return " | ".join(format(splits[n][field].get(key, 0), fmt) if splits[n][field] else "-"
                          for n in names)

    out += ["| median width x height | " + " | ".join(
                f"{splits[n]['width'].get('median', 0):.0f} x "
                f"{splits[n]['height'].get('median', 0):.0f}" for n in names) + " |",
            f"| median aspect (w/h) | {stat('aspect', 'median', '.2f')} |",
            f"| mean brightness (0-255) | {stat('brightness', 'mean', '.1f')} |",
            f"| mean contrast (luma std) | {stat('contrast', 'mean', '.1f')} |",
            f"| mean colourfulness | {stat('colorfulness', 'mean', '.1f')} |",
            "| grayscale share | " + " | ".join(_pct(splits[n]["grayscale_share"])
                                                 for n in names) + " |",
            f"| median blur (Laplacian var.) | {stat('blur', 'median', '.0f')} |", ""]
    return out


def _leakage_md(f: dict[str, Any]) -> list[str]:
    leak = f["leakage"]
    out = ["## Leakage across splits", ""]
    if len(leak["splits"]) < 2:
        return out + ["One split only: nothing can leak.", ""]
    out += ["| split | images | with an exact copy elsewhere | with a near copy elsewhere |",
            "|---|---|---|---|"]
    for name, s in leak["splits"].items():
        out.append(f"| {name} | {s['images']:,} | {s['leaked_exact']:,} "
                   f"({_pct(s['share_exact'])}) | {s['leaked_near']:,} "
                   f"({_pct(s['share_near'])}) |")
    out += ["", "| splits | exact pairs | near pairs (exact included) |", "|---|---|---|"]
    out += [f"| {p.replace('|', ' / ')} | {v['exact']:,} | {v['near']:,} |"
            for p, v in leak["pairs"].items()]
    return out + [""]


def _odd_md(f: dict[str, Any]) -> list[str]:
    t = f["thresholds"]
    rules = {
        "tiny": f"shorter side < {t['min_side']:g} px",
        "extreme_aspect": f"longer side > {t['max_aspect']:g} x the shorter",
        "near_constant": f"luma std < {t['min_std']:g} (of 255)",
        "dark": f"mean luma < {t['dark']:g}",
        "bright": f"mean luma > {t['bright']:g}",
        "grayscale": f"mean max(R,G,B)-min(R,G,B) < {t['gray_chroma']:g}, in a set more than "
                     f"{_pct(t['color_share'])} colour",
        "blurry": f"variance of the Laplacian < {t['blur']:g} (luma at 256 px short side; "
                  "near-constant images left out)",
    }
    out = ["## Odd images", "", "| kind | rule | images |", "|---|---|---|"]
    out += [f"| {k} | {rules[k]} | {len(v):,} |" for k, v in f["odd"].items()]
    out.append("")
    for kind, items in f["odd"].items():
        for m in items[:LIST_MAX]:
            why = ", ".join(f"{k} {v}" for k, v in m.items()
                            if k not in ("split", "class", "key", "path", "index"))
            out.append(f"- {kind}: `{m['path'] or m['key']}` ({_who(m)}; {why})")
    return out + [""]


def _drift_md(d: dict[str, Any]) -> list[str]:
    out = ["## Drift between splits", ""]
    if not d.get("splits"):
        return out + [d.get("note", "no split to compare"), ""]
    out += [f"Embeddings: {d['model']} ({d['weights']}), {d['dim']} dimensions, images "
            f"resized to {d['size']} px. Each image's distance is the cosine distance to its "
            f"nearest {d['reference']} image; the {d['reference']} images' own distances (to "
            "their nearest other one) are the baseline. score = median distance / baseline "
            "median (1: as close as the reference is to itself); far = beyond the baseline's "
            "95th percentile.", "",
            "| split | images | median distance | score | far share |", "|---|---|---|---|---|",
            f"| {d['reference']} (baseline) | {d['baseline']['images']:,} | "
            f"{d['baseline']['median']:.4f} | 1.00 | 5.0 % |"]
    for name, s in d["splits"].items():
        out.append(f"| {name} | {s['images']:,} | {s['median']:.4f} | {s['score']:.2f} | "
                   f"{_pct(s['far_share'])} |")
    out += ["", "Farthest from the reference, per class:", ""]
    for cls, items in d["farthest"].items():
        out.append(f"- {cls}: " + ", ".join(f"`{m['path'] or m['key']}` ({m['split']}, "
                                             f"{m['distance']:.3f})" for m in items))
    return out + [""]


# --- sheets ------------------------------------------------------------------------------------


def thumbnails(records: Iterable[Any], wanted: set[int], max_pixels: int) -> dict[int, Any]:
    """Small RGB thumbnails of the ``wanted`` positions of the audited records (read again:
    files or the bytes shard samples carry); a gray cell for one that cannot be read now."""
    from PIL import Image

    from dataprep.errors import ImageError
    from dataprep.io.decode import open_image, record_bytes

    out: dict[int, Any] = {}
    for i, record in enumerate(records):
        if i not in wanted:
            continue
        try:
            img = open_image(record_bytes(record), max_pixels=max_pixels,
                             draft_short_side=CELL, name=record.path or record.key)
            img.thumbnail((CELL, CELL))
        except ImageError:
            img = Image.new("RGB", (CELL, CELL), (200, 200, 200))
        out[i] = img
        if len(out) == len(wanted):
            break
    return out


def _sheet(rows: list[tuple[str, list[dict[str, Any]]]], caption: list[str],
           thumbs: dict[int, Any]) -> bytes:
    from PIL import Image

    from dataprep.jobs.preview import contact_sheet

    blank = Image.new("RGB", (CELL, CELL), (200, 200, 200))
    drawn = [(label, [[thumbs.get(m["index"], blank) for m in members[:MAX_COLUMNS]]])
             for label, members in rows[:MAX_ROWS]]
    columns = max((min(len(m), MAX_COLUMNS) for _, m in rows[:MAX_ROWS]), default=1)
    # at least MIN_COLUMNS wide, so the row labels (split/class of each image) can be read
    headers = [str(i + 1) if i < columns else "" for i in range(max(columns, MIN_COLUMNS))]
    sheet = contact_sheet(drawn, [headers], CELL, caption)
    buf = io.BytesIO()
    sheet.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def _row_label(members: list[dict[str, Any]], head: str) -> str:
    return head + " | " + "  ".join(f"{i + 1}:{_who(m)}" for i, m in enumerate(
        members[:MAX_COLUMNS]))


def sheet_rows(f: dict[str, Any]) -> dict[str, tuple[list[str], list]]:
    """Per sheet: its caption and rows (label, members); sheets without rows left out."""
    near = f["near_duplicates"]["clusters"]
    # clusters across splits first, then the largest
    ordered = sorted(near, key=lambda g: (not g["across_splits"], -g["size"]))
    out: dict[str, tuple[list[str], list]] = {}
    if ordered:
        out["clusters.png"] = (
            [f"Duplicate clusters ({len(near)}; <= {f['thresholds']['near_hamming']} bits): "
             "one row each, split/class of every image"],
            [(_row_label(g["members"], f"{g['size']} imgs, d<={g['max_distance']}"),
              g["members"]) for g in ordered])
    leak_rows = []
    for g in ordered:
        if not g["across_splits"]:
            continue
        by_split: dict[str, dict[str, Any]] = {}
        for m in g["members"]:
            by_split.setdefault(m["split"], m)
        pair = list(by_split.values())[:2]
        leak_rows.append((_row_label(pair, "leak"), pair))
    if leak_rows:
        out["leakage.png"] = (["Leakage: one image of each split of a cross-split cluster"],
                              leak_rows)
    odd_rows = []
    for kind, items in f["odd"].items():
        if items:
            odd_rows.append((_row_label(items, f"{kind} ({len(items)})"), items))
    if odd_rows:
        out["odd.png"] = (["Odd images, one row per kind (thresholds in report.md)"], odd_rows)
    drift = f.get("drift") or {}
    if drift.get("farthest"):
        out["drift.png"] = (
            [f"Farthest from {drift['reference']} (embedding distance), one row per class, "
             "farthest first"],
            [(_row_label(items, f"{cls}"), items) for cls, items in drift["farthest"].items()])
    return out


def write_outputs(out: Path, findings: dict[str, Any], errors: Sequence[dict[str, Any]], *,
                  records: Callable[[], Iterable[Any]] | None = None,
                  max_pixels: int = 178_956_970) -> list[str]:
    """Write the sheets (when ``records``, a fresh stream of the audited records, is given),
    ``report.md``, ``audit.json`` and ``audit-errors.jsonl`` (removed when nothing was
    skipped) into ``out``; returns the names written."""
    written: list[str] = []
    if records is not None:
        plan = sheet_rows(findings)
        wanted = {m["index"] for _, rows in plan.values() for _, members in rows[:MAX_ROWS]
                  for m in members[:MAX_COLUMNS]}
        thumbs = thumbnails(records(), wanted, max_pixels) if wanted else {}
        for name, (caption, rows) in plan.items():
            durable.write_atomic(out / name, _sheet(rows, caption, thumbs))
            written.append(name)
    for name in SHEETS:
        if name not in written:
            durable.unlink(out / name)  # an earlier run's sheet no longer holds
    durable.write_atomic(out / "report.md", report_md(findings, errors, written).encode())
    write_json_atomic(out / "audit.json", findings)
    if errors:
        durable.write_atomic(out / ERRORS_NAME, b"".join(
            json.dumps(dict(e, command="audit"), sort_keys=True).encode() + b"\n"
            for e in errors))
        written.append(ERRORS_NAME)
    else:
        durable.unlink(out / ERRORS_NAME)
    return ["audit.json", "report.md", *written]
