"""The bytes of known commands stay the bytes they were.

Each case runs CLI commands on the bundled photos and compares every output file with the
digests in ``tests/data/output_bytes.json``, recorded from an earlier release of the same
commands. The first case is ``make demo``'s chain (split, tencrop train, resize val, preview).

The shards hold each photo's absolute path (in the json members, the manifests and, through the
json sizes, the tar headers), and this checkout's location differs from the one the digests
were recorded in. So each file is digested as it would be with the photos at ``<PHOTOS>``:
every tar block is kept as it is except the json members' text (the path replaced) and the two
header fields that follow from it (size and checksum, zeroed); a json file is digested with the
path replaced and ``filesize`` numbers zeroed. Everything else - image bytes, member order and
names, every other header byte and the padding - is compared byte for byte.

To record after an intended change of output: ``python tests/test_output_bytes.py`` (prints
and rewrites the file; review the diff).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DIGESTS = REPO / "tests" / "data" / "output_bytes.json"
PHOTOS = REPO / "examples" / "photos"
ROOT = "<PHOTOS>"

# name -> commands (run in order, from a folder holding the photos at ./photos); {P} = that folder
CASES = {
    "demo": [
        "split {P}/photos -o {P}/splits --ratio 0.8",
        "tencrop {P}/splits/train.jsonl -o {P}/shards --short-side 256 --crop 224 "
        "--format webdataset",
        "resize {P}/splits/val.jsonl -o {P}/shards --short-side 256 --format webdataset",
        "preview {P}/splits/train.jsonl -o {P}/preview.png --count 3 --copies 0",
    ],
    "shard_val": [
        "split {P}/photos -o {P}/splits --ratio 0.8",
        "shard {P}/splits/val.jsonl -o {P}/shards --format webdataset",
        "shard {P}/photos -o {P}/packed --shuffle --balance oversample --max-count 40",
    ],
    "resize_jitter_folder": [
        "split {P}/photos -o {P}/splits --ratio 0.5 --seed 3",
        "resize {P}/splits/val.jsonl -o {P}/resized --short-side 96 --max-count 5 "
        "--image-format png",
        "tencrop {P}/splits/train.jsonl -o {P}/crops --short-side 80 --crop 64 --five "
        "--color-jitter 0.4,0.4,0.4,0.1 --pca-lighting 0.1 --seed 5 --format folder",
        "tencrop {P}/splits/val.jsonl -o {P}/lazy --short-side 72 --crop 64 --views lazy "
        "--quality 80",
    ],
}
SKIP = {"dataprep.json", ".dataprep.lock"}  # the ledger holds the command line and timings


def _tar_digest(data: bytes, root: str) -> str:
    """sha256 of a ustar stream with ``root`` -> ``<PHOTOS>`` in the json members."""
    h, pos, name = hashlib.sha256(), 0, ""
    while pos + 512 <= len(data):
        header = data[pos:pos + 512]
        pos += 512
        if header == bytes(512):
            h.update(header)
            continue
        size = int(header[124:136].rstrip(b"\0 ") or b"0", 8)
        name = header[:100].rstrip(b"\0").decode()
        body = data[pos:pos + (size + 511) // 512 * 512]
        pos += len(body)
        if name.endswith(".json"):
            text = body[:size].replace(root.encode(), ROOT.encode())
            h.update(header[:124] + bytes(12) + header[136:148] + bytes(8) + header[156:])
            h.update(len(text).to_bytes(8, "big") + text)
        else:
            h.update(header + body)
    h.update(data[pos:])
    return h.hexdigest()


def _file_digest(path: Path, root: str) -> str:
    data = path.read_bytes()
    if path.suffix == ".tar":
        return _tar_digest(data, root)
    if path.suffix in (".json", ".jsonl"):
        text = data.decode().replace(root, ROOT)
        text = re.sub(r'"filesize": \d+', '"filesize": 0', text)
        return hashlib.sha256(text.encode()).hexdigest()
    return hashlib.sha256(data).hexdigest()


def run_case(name: str, work: Path) -> dict[str, str]:
    """Run the case's commands in ``work`` and digest every file they wrote."""
    shutil.copytree(PHOTOS, work / "photos")
    for command in CASES[name]:
        argv = command.format(P=work).split()
        done = subprocess.run([sys.executable, "-m", "dataprep", *argv], capture_output=True,
                              text=True, cwd=work)
        assert done.returncode == 0, f"{command}: {done.stderr}"
    root = str(work / "photos")
    return {str(p.relative_to(work)): _file_digest(p, root)
            for p in sorted(work.rglob("*")) if p.is_file()
            and p.name not in SKIP and "photos" not in p.relative_to(work).parts}


@pytest.mark.parametrize("name", sorted(CASES))
def test_output_bytes_unchanged(name: str, tmp_path: Path) -> None:
    expected = json.loads(DIGESTS.read_text())[name]
    got = run_case(name, tmp_path)
    assert sorted(got) == sorted(expected), "another set of files was written"
    changed = [f for f in expected if got[f] != expected[f]]
    assert not changed, f"these files' bytes changed: {changed}"


def test_digest_sees_a_changed_byte(tmp_path: Path) -> None:
    """The normalisation hides only the photos' folder: one image byte, or a header byte other
    than the size and checksum, changes the digest."""
    import tarfile

    tar = tmp_path / "a.tar"
    with tarfile.open(tar, "w", format=tarfile.USTAR_FORMAT) as t:
        for member, payload in (("k.json", b'{"path": "/x/photos/a.jpg"}'), ("k.jpg", b"JPEG")):
            info = tarfile.TarInfo(member)
            info.size = len(payload)
            t.addfile(info, __import__("io").BytesIO(payload))
    data = tar.read_bytes()
    base = _tar_digest(data, "/x/photos")
    moved = data.replace(b"/x/photos", b"/y/photos")
    assert _tar_digest(moved, "/y/photos") == base
    i = data.index(b"JPEG")
    assert _tar_digest(data[:i] + b"X" + data[i + 1:], "/x/photos") != base
    mode = 100  # the mode field of the first header
    assert _tar_digest(data[:mode] + b"7" + data[mode + 1:], "/x/photos") != base


if __name__ == "__main__":  # record
    import tempfile

    recorded = {}
    for case in sorted(CASES):
        with tempfile.TemporaryDirectory() as d:
            recorded[case] = run_case(case, Path(d))
    DIGESTS.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    print(json.dumps(recorded, indent=1, sort_keys=True))
