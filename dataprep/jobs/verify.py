"""``verify DST``: re-read every shard and check it against the ledgers.

For each split in ``dataprep.json``: every shard exists, its size and sha256 equal the ledger,
its sample count equals the ledger and ``_info.json``, and every image decodes. Shards on disk
that no ledger names, and leftover temporary files, are reported too. Shards are checked in
parallel (one task per shard).
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path

import click

from dataprep.errors import DataprepError, ImageError, ShardError, UsageError
from dataprep.io.decode import open_image
from dataprep.io.manifest import INFO_NAME, LEDGER_NAME, read_json
from dataprep.io.writers import TMP_SUFFIX, sha256_file


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
                         f"{c.samples - c.undecodable:,}/{c.samples:,}",
                         "ok" if c.ok else "FAIL"])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        out = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
        for c in self.checks:
            out += [f"{c.split}/{c.name}: {p}" for p in c.problems]
        out += self.problems
        total = sum(c.samples for c in self.checks)
        verdict = "OK" if self.ok else "FAILED"
        out.append(f"{verdict}: {len(self.checks)} shards, {total:,} samples in {self.out_dir}")
        return out


def _samples_of(path: Path, fmt: str):
    from dataprep.io import readers

    if fmt == "lmdb":
        return readers.iter_lmdb(path.parent)
    return (readers.to_sample(d) for d in readers.iter_tar(path))


def check_shard(out_dir: str, split: str, fmt: str, entry: dict, info_len: int | None,
                decode: bool = True) -> ShardCheck:
    """Hash, count and decode one shard (runs in a worker)."""
    path = Path(out_dir) / entry["name"]
    check = ShardCheck(split, entry["name"], entry.get("num_samples"))
    if not path.exists():
        check.problems.append("missing")
        return check
    check.bytes = path.stat().st_size
    if check.bytes != entry.get("bytes"):
        check.problems.append(f"size {check.bytes:,} != ledger {entry.get('bytes'):,}")
    check.sha_ok = sha256_file(path) == entry.get("sha256")
    if not check.sha_ok:
        check.problems.append("sha256 differs from the ledger")
    try:
        for sample in _samples_of(path, fmt):
            check.samples += 1
            if decode:
                try:
                    open_image(sample.image, name=sample.key)
                except ImageError as exc:
                    check.undecodable += 1
                    if check.undecodable <= 3:
                        check.problems.append(str(exc))
    except (ShardError, DataprepError) as exc:
        check.problems.append(str(exc))
    if check.undecodable > 3:
        check.problems.append(f"{check.undecodable} images in all do not decode")
    if check.expected_samples is not None and check.samples != check.expected_samples:
        check.problems.append(f"{check.samples:,} samples, ledger says {check.expected_samples:,}")
    if info_len is not None and check.samples != info_len:
        check.problems.append(f"{check.samples:,} samples, _info.json says {info_len:,}")
    return check


def verify(out_dir: str | Path, *, jobs: int | None = None, decode: bool = True) -> VerifyReport:
    """Check every shard of ``out_dir`` against ``dataprep.json`` and ``_info.json``."""
    from joblib import Parallel, delayed

    from dataprep.runner import resolve_jobs

    out = Path(out_dir)
    ledger = read_json(out / LEDGER_NAME)
    if ledger is None or "splits" not in ledger:
        raise UsageError(f"{out} has no {LEDGER_NAME}; verify checks output written by dataprep")
    info = read_json(out / INFO_NAME, {"splits": {}})
    report = VerifyReport(str(out))
    tasks = []
    named: set[str] = set()
    for split, entry in ledger["splits"].items():
        fmt = entry.get("format", "webdataset")
        lengths = (info["splits"].get(split, {}).get("shard_lengths") if fmt == "webdataset"
                   else None)
        if fmt == "webdataset" and lengths is None:
            report.problems.append(f"{split}: missing from {INFO_NAME}")
        for i, shard in enumerate(entry.get("shards", [])):
            named.add(shard["name"])
            info_len = lengths[i] if lengths is not None and i < len(lengths) else None
            tasks.append((split, fmt, shard, info_len))
        if fmt == "webdataset":
            for path in sorted(glob.glob(str(out / f"{split}-*.tar"))):
                if Path(path).name not in named:
                    report.problems.append(f"{Path(path).name}: on disk but in no ledger")
    for leftover in sorted(glob.glob(str(out / f"*{TMP_SUFFIX}"))):
        report.problems.append(f"{Path(leftover).name}: unfinished temporary file")
    n_jobs = min(resolve_jobs(jobs), max(1, len(tasks)))
    if n_jobs == 1:
        checks = [check_shard(str(out), s, f, e, n, decode) for s, f, e, n in tasks]
    else:
        checks = Parallel(n_jobs=n_jobs)(delayed(check_shard)(str(out), s, f, e, n, decode)
                                         for s, f, e, n in tasks)
    report.checks = list(checks)
    return report


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
