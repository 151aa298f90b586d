"""``dataprep audit``: parse flags, call :func:`dataprep.jobs.audit.audit`, render its result.

:mod:`dataprep.cli` registers the command by name; importing this module is cheap.
"""

from __future__ import annotations

import click

from dataprep.cli_options import cluster_options, read_options, reports_errors

FAIL_ON = ("leakage", "exact-leakage", "conflicts")


def _odd(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict:
    from dataprep.jobs.audit_findings import ODD_THRESHOLDS

    out = {}
    for item in value:
        name, _, number = item.partition("=")
        name = name.strip().replace("-", "_")
        if name not in ODD_THRESHOLDS:
            raise click.BadParameter(f"{item!r}: unknown threshold {name!r}; expected one of "
                                     f"{', '.join(ODD_THRESHOLDS)}", ctx=ctx, param=param)
        try:
            out[name] = float(number)
        except ValueError:
            raise click.BadParameter(f"{item!r}: expected NAME=NUMBER, e.g. blur=50", ctx=ctx,
                                     param=param) from None
    return out


@click.command("audit")
@click.argument("srcs", nargs=-1, required=True, metavar="SRC...")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Folder for audit.json, report.md, features.jsonl and the contact sheets: "
                   "new, empty or an earlier audit's (resumed); any other is refused.")
@click.option("--threshold", type=click.IntRange(0, 63), default=None,
              help="Near duplicates: Hamming distance, in bits of 64, up to which two images "
                   "(or one and the other's mirror) match, in both the DCT hash and the "
                   "difference hash [default: 12, tuned by benchmarks/audit_quality.py].")
@click.option("--odd", "odd", multiple=True, metavar="NAME=NUMBER", callback=_odd,
              help="Change an odd-image threshold, e.g. --odd blur=50 --odd min_side=64 "
                   "(names and defaults in report.md).")
@click.option("--weights", type=click.Path(dir_okay=False, exists=True), default=None,
              help="A torchvision state_dict (e.g. mobilenet_v2-b0353104.pth): embed every image "
                   "and measure each split's drift from --reference (pip install "
                   "'dataprep[train]').")
@click.option("--model", default="mobilenet_v2", show_default=True,
              help="Model name the --weights belong to (torchvision, or tiny_cnn).")
@click.option("--embed-size", type=click.IntRange(min=16), default=224, show_default=True,
              help="Side, in pixels, of the center crop embedded (after a short-side resize).")
@click.option("--reference", default="train", show_default=True,
              help="The split the others are compared with for drift.")
@click.option("--fail-on", "fail_on", type=click.Choice(FAIL_ON), multiple=True,
              help="Exit 1 (after writing the report) when: leakage (any exact or near "
                   "duplicate across splits), exact-leakage (identical pixels across splits), "
                   "conflicts (the same image under two classes). For CI.")
@click.option("--no-sheets", is_flag=True, help="Skip the contact sheets (PNG).")
@read_options("The findings do not depend on it.")
@cluster_options
@reports_errors
def audit(srcs, out, threshold, odd, weights, model, embed_size, reference, fail_on, no_sheets,
          max_pixels, root, on_error, jobs):
    """Find exact and near duplicates, leakage across splits, label conflicts, odd images and
    (with --weights) drift between splits, before anyone trains.

    \b
    SRC: image folders, list files, manifests, the folder `dataprep split` wrote (the
    manifests its dataprep.json names are the splits), or shards; several SRC without
    splits are named after their folders (dataprep audit data/train data/val -o audit).
    \b
    Writes to -o:
      report.md       every finding with counts, thresholds and files
      audit.json      the same, for scripts
      features.jsonl  per image: sha256, pixel digest, hashes, size, measures; a rerun
                      computes only new or changed images
      embeddings.npz  with --weights: the embeddings, reused the same way
      clusters.png, leakage.png, odd.png, drift.png   contact sheets
      audit-errors.jsonl  the inputs that could not be read (when any)
    \b
    Example:
      dataprep split photos/ -o splits && dataprep audit splits -o audit --fail-on leakage
    """
    from dataprep.jobs.audit import audit as run_audit

    result = run_audit(list(srcs), out, jobs=jobs, root=root, threshold=threshold,
                       weights=weights, model=model, embed_size=embed_size, reference=reference,
                       max_pixels=max_pixels, on_error=on_error, sheets=not no_sheets,
                       thresholds=odd, log=click.echo)
    for line in result.lines():
        click.echo(line)
    failed = []
    if "leakage" in fail_on and result.leaks():
        failed.append(f"{result.leaks():,} duplicate pairs across splits")
    if "exact-leakage" in fail_on and result.exact_leaks():
        failed.append(f"{result.exact_leaks():,} identical pairs across splits")
    if "conflicts" in fail_on and result.conflicts():
        failed.append(f"{result.conflicts():,} label conflicts")
    if failed:
        raise click.ClickException(
            f"--fail-on: {'; '.join(failed)} (see {out}/report.md); split with --group-by "
            "near-duplicates to keep copies in one split")
