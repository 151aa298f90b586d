"""The README's CLI tour runs as written: every ```bash block of its "CLI tour" section, top to
bottom, in an empty folder, through the installed ``dataprep`` command.

``DATAPREP`` (the clone, for its photos and recipes) points at a stand-in holding this
checkout's ``examples`` and ``recipes`` and, for the drift line, MobileNetV2 weights of the
right architecture (seeded random ones: the real ones need the network once, ``make weights``).
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"


def tour_commands() -> list[str]:
    """The lines of the tour's bash blocks (continuations joined), in order."""
    text = README.read_text()
    section = text[text.index("## CLI tour"):text.index("\n## ", text.index("## CLI tour") + 5)]
    lines: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        lines += block.replace("\\\n", " ").splitlines()
    return [line for line in lines if line.strip()]


def test_the_tour_is_found() -> None:
    commands = tour_commands()
    assert commands[0].startswith("DATAPREP=")
    verbs = {c.split()[1] for c in commands if c.startswith("dataprep ")}
    assert {"split", "tencrop", "resize", "shard", "run", "verify", "stats", "augment",
            "preview", "audit"} <= verbs


def _stand_in_clone(root: Path) -> Path:
    torch = pytest.importorskip("torch", reason="the drift line needs the train extra")
    from torchvision.models import mobilenet_v2

    root.mkdir()
    for name in ("examples", "recipes"):
        (root / name).symlink_to(REPO / name)
    (root / "models").mkdir()
    torch.manual_seed(0)
    torch.save(mobilenet_v2().state_dict(), root / "models" / "mobilenet_v2-b0353104.pth")
    return root


def test_the_tour_runs_top_to_bottom_in_an_empty_folder(tmp_path: Path) -> None:
    clone = _stand_in_clone(tmp_path / "clone")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "dataprep"  # the command a user runs, with this interpreter
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m dataprep "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    commands = tour_commands()
    commands[0] = f'DATAPREP="{clone}"'
    work = tmp_path / "empty"
    work.mkdir()
    script = "set -euo pipefail\n" + "\n".join(
        f"echo '$ '{_quote(c)}\n{c}" for c in commands) + "\n"
    done = subprocess.run(["bash", "-c", script], cwd=work, capture_output=True, text=True,
                          env=dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}"),
                          timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    for made in ("splits/train.jsonl", "shards/train-000000.tar", "shards/val-000000.tar",
                 "packed/train.lmdb", "chain/shards/_info.json", "stats.json",
                 "augmented/dataprep.json", "jittered/dataprep.json", "preview.png",
                 "sheet.png", "audit/report.md", "audit-drift/drift.png",
                 "grouped/train.jsonl"):
        assert (work / made).exists(), made


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
