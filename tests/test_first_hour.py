"""What a new user trips on first: a bare ``--max-disk 10`` (bytes? GB?) is refused with the
forms to write; the ``--max-disk`` refusal suggests only flags the verb has; a source that
does not exist is a usage error (exit 2) in every verb, as when click checks SRC itself."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from dataprep.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.mark.parametrize("value", ["10", "10.5", " 7 "])
def test_bare_max_disk_number_is_refused(image_folder, tmp_path, value):
    result = invoke("resize", image_folder, "-o", tmp_path / "o", "--max-disk", value)
    assert result.exit_code == 2, result.output
    line = error_line(result)
    number = value.strip()
    assert "--max-disk" in line and f"say {number}GB or {number}MB" in line
    assert not (tmp_path / "o").exists()


def test_bare_max_disk_number_in_a_recipe_is_refused(image_folder, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text("[tencrop]\nmax_disk = 10\n")
    result = invoke("tencrop", image_folder, "-o", tmp_path / "o", "--recipe", recipe)
    assert result.exit_code == 2, result.output
    assert "say 10GB or 10MB" in error_line(result)


@pytest.mark.parametrize("value", ["10GB", "500MB", "2GiB", "10 GB"])
def test_max_disk_with_a_unit_is_accepted(image_folder, tmp_path, value):
    result = invoke("resize", image_folder, "-o", tmp_path / "o", "--max-disk", value,
                    "--dry-run", "-j", "1")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("verb", ["resize", "tencrop", "shard"])
def test_max_disk_refusal_suggests_only_flags_the_verb_has(image_folder, tmp_path, verb):
    out = tmp_path / "o"
    result = invoke(verb, image_folder, "-o", out, "--max-disk", "1KB", "-j", "1")
    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert "nothing was written" in line and "--max-disk 1.0 KB" in line
    suggested = set(re.findall(r"--[a-z][a-z-]*", line))
    assert suggested - {"--max-disk"}, line  # it suggests something beyond the budget itself
    options = {opt for p in cli.commands[verb].params for opt in p.opts}
    assert suggested <= options, (suggested - options, line)
    assert not list(out.rglob("*.tar"))


MISSING_SOURCE = [
    ("split", []), ("resize", []), ("tencrop", []), ("shard", []), ("augment", ["--hflip"]),
    ("stats", []), ("audit", []), ("train", []), ("learning-curve", []),
]


@pytest.mark.parametrize("verb,extra", MISSING_SOURCE)
def test_missing_source_is_a_usage_error_in_every_verb(tmp_path, verb, extra):
    missing = tmp_path / "no-such-images"
    result = invoke(verb, missing, "-o", tmp_path / "o", *extra)
    assert result.exit_code == 2, (verb, result.output)
    assert "does not exist" in error_line(result)
    assert not (tmp_path / "o").exists()


def test_missing_source_exits_2_through_the_dataprep_command(tmp_path):
    for verb in ("tencrop", "preview"):
        out = tmp_path / ("o.png" if verb == "preview" else "o")
        result = subprocess.run([sys.executable, "-m", "dataprep", verb, str(tmp_path / "nope"),
                                 "-o", str(out)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, (verb, result.stderr)
        assert "does not exist" in result.stderr and "Traceback" not in result.stderr
