"""``python -m dataprep.train``: the trainer's commands as one click group, without the rest of
the CLI (``train``, ``summary``, ``sweep``, ``compare``).

The group lives apart from :mod:`dataprep.train.cli` because ``sweep`` reads the ``train``
command's parameters from there: the experiment verbs build on ``train``, not the other way
round. Importing this module is cheap (click and stdlib only).
"""

from __future__ import annotations

import click

from dataprep.train.cli import summary, train
from dataprep.train.compare import compare_cmd
from dataprep.train.sweep import sweep_cmd


@click.group("train-tools")
def main_group() -> None:
    """The trainer's commands, runnable as ``python -m dataprep.train``."""


main_group.add_command(train)
main_group.add_command(summary)
main_group.add_command(sweep_cmd)
main_group.add_command(compare_cmd)
