"""``verify DST``: re-read every shard and prove it against the ledgers.

For each split in ``dataprep.json``: every shard exists, its size and sha256 equal the ledger,
its sample count equals the ledger and ``_info.json``, and every image decodes. An LMDB, in
dataprep's layout or Caffe's, has every value parse (a Caffe ``Datum``), a count that equals
its entries (Caffe's: its sidecar's ``num_samples``), and labels within its class list that
agree with each sample's ``class_name``. The ledgers
agree with each other (no shard named twice, counts equal, ``_info.json`` lists exactly the
ledger's WebDataset shards); every shard on disk belongs to a split the ledger names; leftovers
of an interrupted run (journals, the stage folder, temporary files) are reported; a damaged
ledger or journal is a finding, not a crash. Verify holds the folder's lock (shared): it
refuses to check a folder a run is writing. Shards are checked in parallel (one task per
shard).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from dataprep.errors import DataprepError, ImageError, OutputError, ShardError, UsageError
from dataprep.io.caffe import SIDECAR as CAFFE_SIDECAR
from dataprep.io.decode import open_image
from dataprep.io.manifest import (
    INFO_NAME,
    LEDGER_NAME,
    read_json,
    read_ledger,
    wids_index,
    wids_name,
)
from dataprep.io.staging import STAGE_NAME, sha256_file
from dataprep.jobs.output import OutputFolder
from dataprep.jobs.output_names import LOCK_NAME, owns
from dataprep.journal import Journal


@dataclass
class ShardCheck:
    split: str
    name: str
    expected_samples: int | None
    samples: int = 0
    bytes: int = 0
    sha_ok: bool = False
    undecodable: int = 0
    problems: list[str] = field(default_factory=list)
    decoded: bool = True  # False: --no-decode, the images were not decoded

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class VerifyReport:
    out_dir: str
    checks: list[ShardCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # directory-level problems

    @property
    def ok(self) -> bool:
        return not self.problems and all(c.ok for c in self.checks)

    def lines(self) -> list[str]:
        rows = [["split", "shard", "samples", "bytes", "sha256", "decoded", "status"]]
        for c in self.checks:
            rows.append([c.split, c.name, f"{c.samples:,}", f"{c.bytes:,}",
                         "ok" if c.sha_ok else "MISMATCH",
                         f"{c.samples - c.undecodable:,}/{c.samples:,}" if c.decoded
                         else "not checked",
                         "ok" if c.ok else "FAIL"])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        out = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
        for c in self.checks:
            out += [f"{c.split}/{c.name}: {p}" for p in c.problems]
        out += self.problems
        total = sum(c.samples for c in self.checks)
        verdict = "OK" if self.ok else "FAILED"
        skipped = " (images not decoded: --no-decode)" if any(
            not c.decoded for c in self.checks) else ""
        out.append(f"{verdict}: {len(self.checks)} shards, {total:,} samples in {self.out_dir}"
                   f"{skipped}")
        return out


def _samples_of(path: Path, fmt: str):
    from dataprep.io import lmdbread, readers
    from dataprep.records import Sample

    if fmt == "lmdb":
        return lmdbread.iter_lmdb(path.parent)
    if fmt == "folder":
        return iter([Sample(path.stem, path.read_bytes(), path.suffix[1:], -1, {})])
    return (readers.to_sample(d) for d in readers.iter_tar(path))


def _lmdb_classes(path: Path, check: ShardCheck) -> list[str] | None:
    """The class list an LMDB stores (``__classes__``, or the Caffe layout's sidecar), its
    sample count checked against its entries; a damaged header is a finding."""
    from dataprep.io import lmdbread

    try:
        classes = lmdbread.lmdb_header(path.parent)[1]
    except ShardError as exc:
        check.problems.append(str(exc))
        return None
    if not classes and not (path.parent / CAFFE_SIDECAR).exists():
        env = lmdbread.open_lmdb(path.parent)
        try:
            with env.begin() as txn:
                caffe_layout = txn.get(b"__len__") is None
        finally:
            env.close()
        if caffe_layout:
            check.problems.append(f"{CAFFE_SIDECAR} is missing: the Caffe-layout LMDB's class "
                                  "names are lost (its samples still read)")
    return classes


def _label_problem(sample: Any, classes: list[str]) -> str | None:
    """Why a sample's label disagrees with the class list, or None."""
    if sample.cls == -1:
        return None
    if not 0 <= sample.cls < len(classes):
        return (f"sample {sample.key!r:.80} has label {sample.cls}, but the LMDB names "
                f"{len(classes)} classes")
    name = sample.meta.get("class_name")
    if name is not None and name != classes[sample.cls]:
        return (f"sample {sample.key!r:.80} has label {sample.cls} ({classes[sample.cls]!r:.40}) "
                f"but its metadata says class {name!r:.40}")
    return None


def check_shard(out_dir: str, split: str, fmt: str, entry: dict, info_len: int | None,
                decode: bool = True) -> ShardCheck:
    """Hash, count and decode one shard (runs in a worker); a shard that cannot be read is a
    finding."""
    try:
        return _check_shard(out_dir, split, fmt, entry, info_len, decode)
    except (OSError, ValueError) as exc:
        check = ShardCheck(split, entry["name"], entry.get("num_samples"))
        check.problems.append(f"cannot read it ({getattr(exc, 'strerror', None) or exc})")
        return check


def _check_shard(out_dir: str, split: str, fmt: str, entry: dict, info_len: int | None,
                 decode: bool = True) -> ShardCheck:
    path = Path(out_dir) / entry["name"]
    check = ShardCheck(split, entry["name"], entry.get("num_samples"), decoded=decode)
    if not path.is_file():
        check.problems.append("missing")
        return check
    check.bytes = path.stat().st_size
    if check.bytes != entry.get("bytes"):
        check.problems.append(f"size {check.bytes:,} != ledger {entry.get('bytes'):,}")
    check.sha_ok = sha256_file(path) == entry.get("sha256")
    if not check.sha_ok:
        check.problems.append("sha256 differs from the ledger")
    classes = _lmdb_classes(path, check) if fmt == "lmdb" else None
    wrong_labels = 0
    try:
        for sample in _samples_of(path, fmt):
            check.samples += 1
            if classes and (problem := _label_problem(sample, classes)):
                wrong_labels += 1
                if wrong_labels <= 3:
                    check.problems.append(problem)
            if decode:
                try:
                    open_image(sample.image, name=sample.key)
                except ImageError as exc:
                    check.undecodable += 1
                    if check.undecodable <= 3:
                        check.problems.append(str(exc))
    except (ShardError, DataprepError) as exc:
        check.problems.append(str(exc))
    if wrong_labels > 3:
        check.problems.append(f"{wrong_labels} samples in all have labels that differ from the "
                              "LMDB's class list")
    if check.undecodable > 3:
        check.problems.append(f"{check.undecodable} images in all do not decode")
    if check.expected_samples is not None and check.samples != check.expected_samples:
        check.problems.append(f"{check.samples:,} samples, ledger says {check.expected_samples:,}")
    if info_len is not None and check.samples != info_len:
        check.problems.append(f"{check.samples:,} samples, _info.json says {info_len:,}")
    return check


def _interrupted(out: Path) -> bool:
    """``out`` holds what an unfinished run leaves: a journal or the stage folder."""
    return (out / STAGE_NAME).is_dir() or any(out.glob(".journal-*.jsonl"))


def verify(out_dir: str | Path, *, jobs: int | None = None, decode: bool = True) -> VerifyReport:
    """Check every shard of ``out_dir`` against ``dataprep.json`` and ``_info.json``."""
    out = Path(out_dir)
    with OutputFolder(out).locked(create=False, shared=True):
        if not (out / LEDGER_NAME).exists():
            if _interrupted(out):
                raise UsageError(f"{out}: a dataprep run was interrupted before it finished; "
                                 "run the same command again to resume it, then verify")
            raise UsageError(
                f"{out} has no {LEDGER_NAME}; verify checks output written by dataprep")
        report = VerifyReport(str(out))
        report.problems += _leftovers(out)
        try:
            ledger = read_ledger(out)
        except OutputError as exc:
            report.problems.append(str(exc))
            return report
        tasks = _ledger_tasks(out, ledger, report)
        report.checks = _run_checks(out, tasks, jobs, decode)
    return report


def _ledger_tasks(out: Path, ledger: dict[str, Any], report: VerifyReport,
                  ) -> list[tuple[str, str, dict, int | None]]:
    """The shard checks the ledger asks for; the ledgers' own agreement goes to ``report``."""
    if not ledger["splits"]:
        report.problems.append(f"{LEDGER_NAME} names no split")
    try:
        info = read_json(out / INFO_NAME, {"splits": {}})
        info_splits = info["splits"] if isinstance(info, dict) else None
        if not isinstance(info_splits, dict):
            raise OutputError(f"{out / INFO_NAME} has no 'splits' table")
    except OutputError as exc:
        report.problems.append(str(exc))
        info_splits = {}
    tasks = []
    owner: dict[str, str] = {}
    for split, entry in ledger["splits"].items():
        fmt = str(entry.get("format", "webdataset"))
        shards = entry.get("shards", [])
        for shard in shards:
            if not owns(split, fmt, shard["name"]):
                report.problems.append(f"{split}: {LEDGER_NAME} names {shard['name'][:80]!r}, "
                                       "not a name dataprep gives this split's shards")
            if shard["name"] in owner:
                report.problems.append(f"{split}: {shard['name']} is listed twice in "
                                       f"{LEDGER_NAME} (also under {owner[shard['name']]})")
            owner.setdefault(shard["name"], split)
        total = sum(s["num_samples"] for s in shards)
        if entry.get("samples_out", total) != total:
            report.problems.append(f"{split}: {LEDGER_NAME} says {entry.get('samples_out')} "
                                   f"samples but its shards hold {total}")
        lengths = None
        if fmt == "webdataset":
            lengths = _check_info(split, shards, info_splits.get(split), report)
            _check_wids(out, split, entry, report)
        for i, shard in enumerate(shards):
            info_len = lengths[i] if lengths is not None and i < len(lengths) else None
            tasks.append((split, fmt, shard, info_len))
    for split in info_splits:
        if ledger["splits"].get(split, {}).get("format", "webdataset") != "webdataset" or (
                split not in ledger["splits"]):
            report.problems.append(f"{INFO_NAME} lists split {split!r}, which {LEDGER_NAME} "
                                   "does not name as WebDataset output")
    report.problems += [f"{name}: on disk but in no ledger" for name in _on_disk(out)
                        if name not in owner]
    return tasks


def _check_info(split: str, shards: list[dict], info: Any, report: VerifyReport,
                ) -> list[int] | None:
    """``_info.json``'s entry for a WebDataset split lists exactly the ledger's shards."""
    if not isinstance(info, dict):
        report.problems.append(f"{split}: missing from {INFO_NAME}")
        return None
    names, lengths = info.get("filenames"), info.get("shard_lengths")
    if names != [s["name"] for s in shards]:
        report.problems.append(f"{split}: {INFO_NAME} lists the shards {names!r:.200}, not the "
                               f"{len(shards)} of {LEDGER_NAME}")
    if not isinstance(lengths, list) or lengths != [s["num_samples"] for s in shards]:
        report.problems.append(f"{split}: {INFO_NAME} shard_lengths differ from {LEDGER_NAME}")
        lengths = None
    if info.get("num_samples") != sum(s["num_samples"] for s in shards):
        report.problems.append(f"{split}: {INFO_NAME} says num_samples "
                               f"{info.get('num_samples')!r}, the shards hold "
                               f"{sum(s['num_samples'] for s in shards)}")
    return lengths


def _check_wids(out: Path, split: str, entry: dict, report: VerifyReport) -> None:
    """``{split}.wids.json`` is there and lists the ledger's shards, sample counts and
    sizes (what ``wids.ShardListDataset`` indexes by)."""
    name = wids_name(split)
    try:
        index = read_json(out / name)
    except OutputError as exc:
        report.problems.append(f"{split}: {exc}")
        return
    if index is None:
        report.problems.append(f"{split}: {name} is missing (wids readers need it); run the "
                               "same command again to write it")
        return
    want = wids_index(entry)
    if not isinstance(index, dict) or any(index.get(k) != want[k] for k in
                                          ("__kind__", "wids_version", "shardlist")):
        report.problems.append(f"{split}: {name} does not list the shards of {LEDGER_NAME} "
                               "(stale or edited); run the same command again to rewrite it")


_TAR = re.compile(r".+-\d+\.tar")


def _on_disk(out: Path) -> list[str]:
    """Every shard-like file in the folder: tar shards, LMDB environments, and the files of
    class folders (the folder sink)."""
    found = []
    for p in sorted(out.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_file() and p.name.endswith(".tar"):
            found.append(p.name)
        elif p.is_dir() and p.name.endswith(".lmdb"):
            found += [f"{p.name}/{c.name}" for c in sorted(p.iterdir())
                      if c.name not in ("lock.mdb", CAFFE_SIDECAR)]
        elif p.is_dir():
            found += [str(c.relative_to(out)) for c in sorted(p.rglob("*")) if c.is_file()]
    return found


def _leftovers(out: Path) -> list[str]:
    """What an interrupted run leaves: journals, the stage folder, temporary files."""
    problems = []
    for journal in sorted(out.glob(".journal-*.jsonl")):
        split = journal.name[len(".journal-"):-len(".jsonl")]
        try:
            Journal(out, split).load()
            problems.append(f"{split}: a run was interrupted ({journal.name} is there); run the "
                            "same command again to finish it")
        except OutputError as exc:
            problems.append(str(exc))
    if (out / STAGE_NAME).exists():
        problems.append(f"{STAGE_NAME}: unfinished shards of an interrupted run; run the same "
                        "command again to finish it")
    for p in sorted(out.iterdir()):
        if p.name.endswith(".tmp") and p.name != LOCK_NAME:
            problems.append(f"{p.name}: unfinished temporary file")
    return problems


def _run_checks(out: Path, tasks: list[tuple[str, str, dict, int | None]], jobs: int | None,
                decode: bool) -> list[ShardCheck]:
    from joblib import Parallel, delayed

    from dataprep.pool import resolve_jobs

    n_jobs = min(resolve_jobs(jobs), max(1, len(tasks)))
    if n_jobs == 1:
        return [check_shard(str(out), s, f, e, n, decode) for s, f, e, n in tasks]
    return list(Parallel(n_jobs=n_jobs)(delayed(check_shard)(str(out), s, f, e, n, decode)
                                         for s, f, e, n in tasks))


@click.command("verify")
@click.argument("dst", type=click.Path(exists=True, file_okay=False))
@click.option("--jobs", "-j", type=int, default=None, help="Worker processes [default: all cores].")
@click.option("--no-decode", is_flag=True, help="Check hashes and counts only (faster).")
def verify_cmd(dst: str, jobs: int | None, no_decode: bool) -> None:
    """Re-read every shard of DST: sha256, sample counts, and that every image decodes.

    Exits with status 1 when anything differs from dataprep.json / _info.json.
    """
    try:
        report = verify(dst, jobs=jobs, decode=not no_decode)
    except DataprepError as exc:
        raise click.ClickException(str(exc)) from exc
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        raise SystemExit(1)
