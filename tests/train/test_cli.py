"""The trainer's commands: cheap to import, recipes whose keys are the flags."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dataprep.recipe import check_keys, load_recipe, table_for
from dataprep.train.cli import summary, train

REPO = Path(__file__).resolve().parents[2]


def test_importing_the_commands_loads_no_torch():
    code = ("import sys, dataprep.train.cli; "
            "heavy = [m for m in ('torch', 'torchvision', 'matplotlib') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_commands_are_named_for_the_dataprep_group():
    assert (train.name, summary.name) == ("train", "summary")


@pytest.mark.parametrize("recipe", sorted((REPO / "recipes").glob("train-*.toml")),
                         ids=lambda p: p.name)
def test_recipe_keys_are_train_flags(recipe):
    table = table_for(load_recipe(recipe), "train")
    assert table
    check_keys(table, {p.name for p in train.params if p.name}, str(recipe))


def test_a_recipe_with_tables_for_other_verbs_is_taken_under_python_m_dataprep_train(tmp_path):
    """``python -m dataprep.train train --recipe`` (torchrun's way in) reads the [train] table of
    a recipe that also configures other verbs, as ``dataprep train`` does."""
    import subprocess
    import sys

    recipe = tmp_path / "multi.toml"
    recipe.write_text("[tencrop]\nshort_side = 64\n[train]\nepochs = 1\n[trian]\nepochs = 2\n")
    done = subprocess.run([sys.executable, "-m", "dataprep.train", "train", str(tmp_path),
                           "--recipe", str(recipe), "-o", str(tmp_path / "run")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "[trian]" in done.stderr and "[tencrop]" not in done.stderr
    recipe.write_text("[tencrop]\nshort_side = 64\n[train]\nepochs = 1\n")
    done = subprocess.run([sys.executable, "-m", "dataprep.train", "train", str(tmp_path),
                           "--recipe", str(recipe), "-o", str(tmp_path / "run")],
                          capture_output=True, text=True)
    assert "unknown table" not in done.stderr, done.stderr
