"""``python -m dataprep.train train|summary`` (also under ``torchrun -m dataprep.train``)."""

from dataprep.train.commands import main_group

main_group(prog_name="python -m dataprep.train")
