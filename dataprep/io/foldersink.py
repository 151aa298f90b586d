"""The folder sink: ``DST/<class_name>/{key}.{ext}``, one file a sample."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from dataprep.errors import OutputError
from dataprep.io import durable
from dataprep.io.staging import ShardInfo, Staged, StagedWriter
from dataprep.io.tarpack import PackedGroup
from dataprep.records import Sample, short_key

MAX_FILE_NAME = 255  # bytes of one file name on common file systems


class FolderWriter(StagedWriter):
    """``DST/<class_name>/{key}.{ext}``: the layout other tools (ImageFolder) read.

    Every file is one shard of the ledger (name, size, sha256). Files are written and synced
    in the stage folder and renamed into place at each checkpoint (every
    ``checkpoint_every`` records). Two class names that map to one folder name are an error.
    """

    checkpoint_every = 64  # records

    def __init__(self, out_dir: str | Path, split: str, resume: dict | None = None,
                 stage_dir: str | Path | None = None, **_: object) -> None:
        super().__init__(out_dir, split, stage_dir)
        self.count = int((resume or {}).get("count", 0))
        self.groups = 0
        self.sealed: list[Staged] = []
        self.folders: dict[str, str] = {}  # folder name -> the class name written there

    def due(self, samples: list[Sample] | PackedGroup) -> bool:
        return self.groups >= self.checkpoint_every

    def _append(self, samples: list[Sample] | PackedGroup) -> None:
        assert not isinstance(samples, PackedGroup), "folders take samples, not tar members"
        self.groups += 1
        for sample in samples:
            self._write_file(sample)

    def _write_file(self, sample: Sample) -> None:
        # class names and keys may come from untrusted shards: never let them leave out_dir
        class_name = str(sample.meta.get("class_name", sample.cls))
        folder = safe_name(class_name)
        if self.folders.setdefault(folder, class_name) != class_name:
            raise OutputError(f"classes {self.folders[folder]!r} and {class_name!r} would both "
                              f"be written to the folder {folder!r}; rename one of them")
        # a file name fits the 255 bytes file systems allow (a longer key is shortened)
        stem = short_key(safe_name(sample.key), MAX_FILE_NAME - 1 - len(sample.ext))
        name = f"{folder}/{stem}.{sample.ext}"
        tmp = self.stage / name
        tmp.parent.mkdir(exist_ok=True)
        with open(tmp, "xb") as f:
            f.write(sample.image)
            durable.fsync(f)
        self.sealed.append(Staged(tmp, self.out_dir / name, ShardInfo(
            name, 1, len(sample.image), hashlib.sha256(sample.image).hexdigest())))
        self.count += 1

    def checkpoint(self) -> list[Staged]:
        self.groups = 0
        sealed, self.sealed = self.sealed, []
        return sealed

    def state(self) -> dict:
        return {"count": self.count}

    def abort(self) -> None:
        self._drop_stage()  # in a job, the output folder removes the stage folder


def safe_name(text: str) -> str:
    """A single safe path component: no separators, no leading dots, never empty."""
    cleaned = re.sub(r"[^\w\-.]+", "_", text).lstrip(".")  # any script's letters stay distinct
    return cleaned or "_"
