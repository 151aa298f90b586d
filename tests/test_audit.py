"""``dataprep audit`` and ``split --group-by near-duplicates`` on real photos with planted
copies: exact and near duplicates across splits, label conflicts, odd images, --fail-on,
resume, grouping, drift. Hashes are checked against the ``imagehash`` library."""

from __future__ import annotations

import io
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageFilter, ImageOps

from dataprep.cli import cli
from dataprep.io.decode import open_image
from dataprep.ops import phash as ph
from dataprep.ops.hashindex import clusters, near_pairs

REPO = Path(__file__).resolve().parent.parent
PHOTOS = REPO / "examples" / "photos"
ALL = sorted(p for p in PHOTOS.glob("*/*") if p.suffix in (".jpg", ".png"))


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _small(path: Path, side: int = 160) -> Image.Image:
    img = open_image(path)
    img.thumbnail((side, side))
    return img


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def findings(out: Path) -> dict:
    return json.loads((out / "audit.json").read_text())


# --- hashing -------------------------------------------------------------------------------


def test_hashes_equal_imagehash():
    imagehash = pytest.importorskip("imagehash")
    for path in ALL[:12]:
        img = open_image(path)
        assert ph.phash(img) == int(str(imagehash.phash(img)), 16), path
        assert ph.dhash(img) == int(str(imagehash.dhash(img)), 16), path


def test_mirror_hash_matches_mirrored_image():
    img = _small(ALL[0], 256)
    p, pm = ph.phash_pair(img.convert("L"))
    q, qm = ph.phash_pair(ImageOps.mirror(img).convert("L"))
    assert ph.hamming(pm, q) <= 2 and ph.hamming(p, qm) <= 2
    assert ph.hamming(p, q) > 12  # the plain hashes alone would miss the copy


def test_index_finds_the_same_pairs_as_brute_force():
    rng = random.Random(1)
    hashes = [rng.getrandbits(64) for _ in range(300)]
    for i in range(0, 300, 7):  # plant neighbours at 0..14 bits
        flips = rng.sample(range(64), rng.randint(0, 14))
        hashes[i + 1 if i + 1 < 300 else 0] = hashes[i] ^ sum(1 << b for b in flips)
    mirrors = [rng.getrandbits(64) for _ in hashes]
    mirrors[5] = hashes[100] ^ 0b111  # a mirror match
    for t in (3, 8, 12):
        brute = near_pairs(hashes, mirrors, t, method="brute")
        assert brute == near_pairs(hashes, mirrors, t, method="index")
        want = {(i, j) for i in range(300) for j in range(i + 1, 300)
                if min(ph.hamming(hashes[i], hashes[j]), ph.hamming(hashes[i], mirrors[j]),
                       ph.hamming(mirrors[i], hashes[j])) <= t}
        assert {(i, j) for i, j, _ in brute} == want
    assert (5, 100) in {(i, j) for i, j, _ in near_pairs(hashes, mirrors, 3)}
    assert clusters(5, [(0, 1), (1, 2), (3, 4)]) == [[0, 1, 2], [3, 4]]


# --- a planted data set --------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> dict:
    """train/ and val/ folders from real photos: val holds a byte copy of a train photo, a
    resized + mirrored + re-encoded copy of another, a byte copy of a third under another
    class; train holds one odd image of each kind."""
    root = tmp_path_factory.mktemp("planted")
    train, val = root / "train", root / "val"
    photos = ALL[::2][:10]
    for p in photos:
        (train / p.parent.name).mkdir(parents=True, exist_ok=True)
        (train / p.parent.name / (p.stem + ".jpg")).write_bytes(_jpeg(_small(p)))
    for p in ALL[1::2][:4]:  # val's own photos
        (val / p.parent.name).mkdir(parents=True, exist_ok=True)
        (val / p.parent.name / (p.stem + ".jpg")).write_bytes(_jpeg(_small(p)))
    a, b, c = photos[0], photos[1], photos[2]
    exact = val / a.parent.name / "renamed_copy.jpg"
    exact.write_bytes((train / a.parent.name / (a.stem + ".jpg")).read_bytes())
    near_img = ImageOps.mirror(_small(b).resize((120, 90)))
    near = val / b.parent.name / "variant.jpg"
    near.write_bytes(_jpeg(near_img, 60))
    other = next(n for n in sorted({p.parent.name for p in ALL}) if n != c.parent.name)
    (val / other).mkdir(exist_ok=True)
    conflict = val / other / "relabelled.jpg"
    conflict.write_bytes((train / c.parent.name / (c.stem + ".jpg")).read_bytes())
    base = _small(photos[3], 200)
    arr = np.asarray(base, dtype=np.float64)
    odd = {
        "tiny": base.resize((20, 16)),
        "extreme_aspect": base.resize((400, 60)),
        "near_constant": Image.fromarray(
            (np.full((64, 64, 3), 128) + np.random.default_rng(0).integers(-1, 2, (64, 64, 3)))
            .astype(np.uint8)),
        "dark": Image.fromarray((arr * 0.08).astype(np.uint8)),
        "bright": Image.fromarray((arr * 0.08 + 232).astype(np.uint8)),
        "grayscale": base.convert("L"),
        "blurry": base.filter(ImageFilter.GaussianBlur(6)),
    }
    odd_dir = train / photos[3].parent.name  # the photo's class: no label conflict
    for kind, img in odd.items():
        img.save(odd_dir / f"odd_{kind}.png")
    return {"root": root, "train": train, "val": val, "exact": exact, "near": near,
            "conflict": conflict, "a": train / a.parent.name / (a.stem + ".jpg"),
            "b": train / b.parent.name / (b.stem + ".jpg"),
            "c": train / c.parent.name / (c.stem + ".jpg"), "odd": odd_dir,
            "d": train / photos[3].parent.name / (photos[3].stem + ".jpg")}


@pytest.fixture(scope="module")
def audited(planted, tmp_path_factory) -> tuple[Path, dict, str]:
    out = tmp_path_factory.mktemp("audit") / "out"
    code, text = run("audit", str(planted["train"]), str(planted["val"]), "-o", str(out),
                     "-j", "2")
    assert code == 0, text
    return out, findings(out), text


def _paths(group: dict) -> set[str]:
    return {m["path"] for m in group["members"]}


def test_exact_duplicates_across_splits(planted, audited):
    _, f, _ = audited
    groups = [_paths(g) for g in f["exact_duplicates"]["bytes"]]
    assert {str(planted["a"]), str(planted["exact"])} in groups
    assert {str(planted["c"]), str(planted["conflict"])} in groups
    assert all(g["across_splits"] for g in f["exact_duplicates"]["bytes"])
    assert f["exact_duplicates"]["pixels"] == []  # no pixel-only copies planted
    assert f["leakage"]["pairs"]["train|val"]["exact"] == 2


def test_near_duplicate_of_a_mirrored_resized_reencoded_copy(planted, audited):
    _, f, _ = audited
    clusters_ = [_paths(g) for g in f["near_duplicates"]["clusters"]]
    assert {str(planted["b"]), str(planted["near"])} in clusters_
    leak = f["leakage"]["splits"]["val"]
    assert leak["leaked_near"] == 3 and leak["leaked_exact"] == 2
    assert leak["share_near"] == round(3 / leak["images"], 4)
    assert f["leakage"]["pairs"]["train|val"]["near"] == 3
    # the other clusters: the odd images made from one photo, with it; other photos stay apart
    others = [g for g in clusters_ if str(planted["b"]) not in g and str(planted["a"]) not in g
              and str(planted["c"]) not in g]
    odd = {str(p) for p in planted["odd"].glob("odd_*")}
    assert others and all(g - {str(planted["d"])} <= odd for g in others)


def test_label_conflict(planted, audited):
    _, f, _ = audited
    conflicts = f["label_conflicts"]
    assert len(conflicts) == 1 and conflicts[0]["kind"] == "exact"
    assert _paths(conflicts[0]) == {str(planted["c"]), str(planted["conflict"])}
    assert len(conflicts[0]["classes"]) == 2


def test_odd_images_of_each_kind(planted, audited):
    _, f, _ = audited
    for kind, items in f["odd"].items():
        assert str(planted["odd"] / f"odd_{kind}.png") in {m["path"] for m in items}, kind
    flagged = {m["path"] for items in f["odd"].values() for m in items}
    photos = {m["path"] for m in f["exact_duplicates"]["bytes"][0]["members"]}
    assert not flagged & photos  # real photos are not odd
    assert f["thresholds"]["blur"] > 0 and f["thresholds"]["min_side"] == 32


def test_report_and_sheets(audited):
    out, f, text = audited
    assert "leakage val: 3 of" in text
    report = (out / "report.md").read_text()
    assert "12 of 64 bits" in report and "## Leakage across splits" in report
    assert "| val |" in report and "renamed_copy.jpg" in report
    assert set(f["splits"]) == {"train", "val"}
    assert f["splits"]["val"]["images"] == 7
    for name in ("clusters.png", "leakage.png", "odd.png"):
        with Image.open(out / name) as img:
            assert img.format == "PNG" and img.width > 96
    assert not (out / "drift.png").exists()
    lines = (out / "features.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"audit_features": 1} and len(lines) == 1 + f["images"]


def test_fail_on_leakage(planted, tmp_path):
    code, text = run("audit", str(planted["train"]), str(planted["val"]), "-o",
                     str(tmp_path / "a"), "-j", "1", "--fail-on", "leakage", "--no-sheets")
    assert code == 1 and "duplicate pairs across splits" in text
    clean = tmp_path / "clean"
    shutil.copytree(planted["val"], clean)
    for p in (clean / planted["exact"].relative_to(planted["val"]),
              clean / planted["near"].relative_to(planted["val"]),
              clean / planted["conflict"].relative_to(planted["val"])):
        p.unlink()
    code, text = run("audit", str(planted["train"]), str(clean), "-o", str(tmp_path / "b"),
                     "-j", "1", "--fail-on", "leakage", "--fail-on", "conflicts", "--no-sheets")
    assert code == 0, text


def test_resume_skips_done_records(planted, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(planted["train"], src)
    out = tmp_path / "out"
    code, text = run("audit", str(src), "-o", str(out), "-j", "1", "--no-sheets")
    assert code == 0 and "0 reused" in text
    n = findings(out)["images"]
    code, text = run("audit", str(src), "-o", str(out), "-j", "1", "--no-sheets")
    assert f"(0 read, {n} reused" in text
    # a new image, and a torn last journal line (a kill mid-write): only those are computed
    shutil.copy(planted["near"], src / planted["odd"].name / "new.jpg")
    journal = out / "features.jsonl"
    data = journal.read_bytes()
    journal.write_bytes(data[: len(data) - 40])
    code, text = run("audit", str(src), "-o", str(out), "-j", "1", "--no-sheets")
    assert code == 0 and f"(2 read, {n - 1} reused" in text
    first = {json.loads(x)["path"]: json.loads(x).get("features")
             for x in journal.read_text().splitlines()[1:]}
    assert len(first) == n + 1 and all(first.values())


def test_split_group_by_near_duplicates_keeps_clusters_whole(tmp_path):
    src = tmp_path / "src"
    for p in ALL[:16]:
        d = src / p.parent.name
        d.mkdir(parents=True, exist_ok=True)
        img = _small(p)
        d.joinpath(p.stem + ".jpg").write_bytes(_jpeg(img))
        d.joinpath(p.stem + "_q50.jpg").write_bytes(_jpeg(img, 50))
        d.joinpath(p.stem + "_mirror.jpg").write_bytes(_jpeg(ImageOps.mirror(img)))

    def straddling(splits: Path) -> int:
        out = splits.parent / (splits.name + "-audit")
        code, text = run("audit", str(splits), "-o", str(out), "-j", "1", "--no-sheets")
        assert code == 0, text
        return sum(g["across_splits"] for g in findings(out)["near_duplicates"]["clusters"])

    code, text = run("split", str(src), "-o", str(tmp_path / "plain"), "--ratio", "0.6")
    assert code == 0, text
    assert straddling(tmp_path / "plain") > 0  # the leak a plain split makes
    code, text = run("split", str(src), "-o", str(tmp_path / "grouped"), "--ratio", "0.6",
                     "--group-by", "near-duplicates", "-j", "1")
    assert code == 0, text
    assert "16 clusters (48 images) kept whole" in text
    assert "requested" in text or "exactly the requested" in text
    assert straddling(tmp_path / "grouped") == 0
    rows = [json.loads(x) for n in ("train", "val")
            for x in (tmp_path / "grouped" / f"{n}.jsonl").read_text().splitlines()]
    by_group: dict[str, set[str]] = {}
    for r in rows:
        by_group.setdefault(r["group"], set()).add(r["split"])
    assert len(by_group) == 16 and all(len(s) == 1 for s in by_group.values())
    # --audit DIR reuses the audit's features: the same split
    code, _ = run("split", str(src), "-o", str(tmp_path / "again"), "--ratio", "0.6",
                  "--group-by", "near-duplicates", "--audit", str(tmp_path / "plain-audit"))
    assert code == 0
    for n in ("train", "val"):
        assert (tmp_path / "again" / f"{n}.jsonl").read_text() == \
            (tmp_path / "grouped" / f"{n}.jsonl").read_text()


def test_drift_ranks_a_foreign_domain_first(tmp_path):
    """train: the left 60 % of every photo; val: the right 60 % of half of them (the same
    domain, other views) and, for a quarter, a dark grayscale version of that view instead
    (another domain, as electroluminescence images of solar cells are). A tiny CNN with random,
    seeded weights ranks those first, as MobileNetV2's ImageNet weights do (checked by hand
    on this set, and on real solar-cell images mixed into photos). Random weights do not rank
    edge-map drawings first (they put them closest to the photos); real weights do."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from dataprep.train.models import build_model

    torch.manual_seed(0)
    weights = tmp_path / "tiny.pt"
    torch.save(build_model("tiny_cnn", 10).model.state_dict(), weights)
    train, val = tmp_path / "train", tmp_path / "val"
    foreign = set()
    for k, p in enumerate(ALL):
        img = _small(p, 128)
        w, h = img.size
        (train / p.parent.name).mkdir(parents=True, exist_ok=True)
        img.crop((0, 0, int(w * 0.6), h)).save(train / p.parent.name / (p.stem + ".png"))
        if k % 2:
            continue
        right = img.crop((int(w * 0.4), 0, w, h))
        (val / p.parent.name).mkdir(parents=True, exist_ok=True)
        if k % 4 == 0:
            path = val / p.parent.name / (p.stem + "_dark.png")
            Image.fromarray((np.asarray(right.convert("L")) * 0.3).astype(np.uint8)).save(path)
            foreign.add(str(path))
        else:
            right.save(val / p.parent.name / (p.stem + ".png"))
    out = tmp_path / "out"
    code, text = run("audit", str(train), str(val), "-o", str(out), "-j", "1", "--weights",
                     str(weights), "--model", "tiny_cnn", "--embed-size", "64")
    assert code == 0, text
    d = findings(out)["drift"]
    top = {m["path"] for m in d["ranking"][:len(foreign)]}
    assert top == foreign
    assert d["splits"]["val"]["score"] > 1.5
    assert d["baseline"]["images"] == len(ALL)
    firsts = {items[0]["path"] for items in d["farthest"].values()}
    assert firsts <= foreign and firsts  # the sheet's first column: the foreign images
    with Image.open(out / "drift.png") as sheet:
        assert sheet.format == "PNG"
    assert "drift val: score" in text
    # a rerun reuses the embeddings (same weights, same files): the same ranking
    code, text = run("audit", str(train), str(val), "-o", str(out), "-j", "1", "--weights",
                     str(weights), "--model", "tiny_cnn", "--embed-size", "64", "--no-sheets")
    n = len(ALL) + len(ALL[::2])  # train + val
    assert code == 0 and f"embedding 0 images with tiny_cnn ({weights}); {n} reused" in text
    assert findings(out)["drift"]["ranking"] == d["ranking"]


def test_split_records_keeps_a_cluster_across_classes_in_one_split():
    from dataprep.jobs.split import split_records
    from dataprep.records import Record

    records = [Record(f"{c}_{i}", f"/x/{c}/{i}.jpg", label, c)
               for label, c in enumerate(("cat", "dog")) for i in range(10)]
    groups = {"cat_3": "dup-a", "dog_7": "dup-a", "cat_1": "dup-b", "cat_2": "dup-b"}
    for seed in range(20):
        out = split_records(records, 0.7, seed=seed, groups_of=groups)
        where = {r.key: name for name, recs in out.items() for r in recs}
        assert where["cat_3"] == where["dog_7"] and where["cat_1"] == where["cat_2"]
        assert sorted(where) == sorted(r.key for r in records)
        for c in ("cat", "dog"):  # 7 / 3 asked; a pair may move it by one at most
            n_train = sum(1 for r in out["train"] if r.class_name == c)
            assert abs(n_train - 7) <= 1
        grouped = {r.key: r.group for recs in out.values() for r in recs if r.group}
        assert grouped == groups


# --- what a folder is, and what -o may hold ----------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """Six small real photos in two classes, and one file that is not an image (counted
    among the images an audit lists, as skipped)."""
    src = tmp_path_factory.mktemp("small") / "src"
    for p in ALL[:3] + ALL[-3:]:
        d = src / p.parent.name
        d.mkdir(parents=True, exist_ok=True)
        d.joinpath(p.stem + ".jpg").write_bytes(_jpeg(_small(p, 96)))
    (src / ALL[0].parent.name / "broken.jpg").write_bytes(b"not an image")
    return src


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_stray_jsonl_in_an_image_folder_is_not_a_split(small, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(small, src)
    one = next(src.glob("*/*.jpg"))
    (src / "captions.jsonl").write_text(json.dumps(
        {"key": "k1", "path": str(one), "label": 0, "class_name": one.parent.name}) + "\n")
    out = tmp_path / "out"
    code, text = run("audit", str(src), "-o", str(out), "-j", "1", "--no-sheets")
    assert code == 0, text
    f = findings(out)
    assert (f["images"], f["skipped"]) == (7, 1) and set(f["splits"]) == {"all"}


def test_shard_folder_with_an_errors_list_is_read_as_shards(small, tmp_path):
    shards = tmp_path / "kf"
    code, text = run("shard", str(small), "-o", str(shards), "--keep-formats", "-j", "1")
    assert code == 0, text
    assert len((shards / "errors.jsonl").read_text().splitlines()) == 1
    out = tmp_path / "out"
    code, text = run("audit", str(shards), "-o", str(out), "-j", "1", "--no-sheets")
    assert code == 0, text
    assert findings(out)["images"] == 6 and set(findings(out)["splits"]) == {"train"}


def test_split_folder_reads_only_the_manifests_its_ledger_names(small, tmp_path):
    splits = tmp_path / "splits"
    code, text = run("split", str(small), "-o", str(splits), "--ratio", "0.5")
    assert code == 0, text
    counts = json.loads((splits / "dataprep.json").read_text())["counts"]
    one = next(small.glob("*/*.jpg"))
    (splits / "extra.jsonl").write_text(json.dumps(
        {"key": "k1", "path": str(one), "label": 0, "class_name": one.parent.name}) + "\n")
    out = tmp_path / "out"
    code, text = run("audit", str(splits), "-o", str(out), "-j", "1", "--no-sheets")
    assert code == 0, text
    f = findings(out)
    assert {s: v["images"] for s, v in f["splits"].items()} == \
        {s: n for s, n in counts.items() if n}
    assert f["images"] == sum(counts.values()) == 7 and f["skipped"] == 1


def test_out_holding_other_files_is_refused_untouched(small, tmp_path):
    shards = tmp_path / "e1"
    code, text = run("shard", str(small), "-o", str(shards), "-j", "1")
    assert code == 0, text
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("my notes\n")
    (mine / "features.jsonl").write_text('{"id": 1}\n')
    for folder, why in ((shards, "holds dataprep.json"), (mine, "holds no audit.json")):
        before = _snapshot(folder)
        result = CliRunner().invoke(cli, ["audit", str(small), "-o", str(folder), "-j", "1",
                                          "--no-sheets"])
        assert result.exit_code == 1 and why in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
        assert _snapshot(folder) == before


def test_rerun_and_resume_into_an_earlier_audit(small, tmp_path):
    out = tmp_path / "out"
    code, text = run("audit", str(small), "-o", str(out), "-j", "1", "--no-sheets")
    assert code == 0, text
    skipped = [json.loads(x) for x in (out / "audit-errors.jsonl").read_text().splitlines()]
    assert [Path(e["path"]).name for e in skipped] == ["broken.jpg"]
    assert not (out / "errors.jsonl").exists()
    assert "listed in audit-errors.jsonl" in (out / "report.md").read_text()
    (out / "notes.txt").write_text("kept\n")  # a file of the user's beside an audit's
    code, text = run("audit", str(small), "-o", str(out), "-j", "1", "--no-sheets")
    assert code == 0 and "(0 read, 7 reused" in text, text
    assert (out / "notes.txt").read_text() == "kept\n"
    # a run killed before its report left only the journal: resumed, not refused
    for name in ("audit.json", "report.md", "audit-errors.jsonl", "notes.txt"):
        (out / name).unlink()
    code, text = run("audit", str(small), "-o", str(out), "-j", "1", "--no-sheets")
    assert code == 0 and "(0 read, 7 reused" in text, text


def test_the_summary_counts_audited_images_apart_from_skipped_inputs(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(PHOTOS, src)
    (src / "animals" / "broken.jpg").write_bytes(b"not an image")
    n = sum(1 for p in src.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})
    code, text = run("audit", str(src), "-o", str(tmp_path / "au"), "--no-sheets", "-j", "1")
    assert code == 0 and f"audit: {n - 1:,} images audited of {n:,} inputs" in text, text
    assert text.splitlines()[0].endswith("; 1 skipped")
    report = (tmp_path / "au" / "report.md").read_text()
    assert f"{n - 1:,} images audited of {n:,} inputs (1 skipped" in report
