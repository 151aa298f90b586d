"""Reading hostile tars never writes outside the output, never unpickles, and ends in a clear
error or a counted skip."""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from dataprep.cli import cli
from dataprep.errors import ShardError
from dataprep.io.readers import MAX_MEMBER_BYTES, iter_tar


def jpeg(color=(200, 30, 30), size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


class Boom:
    """Unpickling this writes a marker file: proof that something unpickled it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "unpickled"))


def add(tar: tarfile.TarFile, name: str, data: bytes, **fields) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in fields.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture()
def hostile(tmp_path: Path) -> tuple[Path, Path]:
    shards = tmp_path / "in"
    shards.mkdir()
    marker = tmp_path / "UNPICKLED"
    with tarfile.open(shards / "train-000000.tar", "w") as tar:
        add(tar, "../evil.jpg", jpeg())
        add(tar, "../evil.cls", b"0")
        add(tar, "../evil.json", json.dumps({"class_name": "../../outside"}).encode())
        add(tar, "/abs/evil2.jpg", jpeg((0, 200, 0)))
        add(tar, "/abs/evil2.cls", b"1")
        link = tarfile.TarInfo("link.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
        add(tar, "payload.pyd", pickle.dumps(Boom(str(marker))))
        add(tar, "payload.pickle", pickle.dumps(Boom(str(marker))))
        add(tar, "payload.jpg", jpeg((0, 0, 200)))
        add(tar, "payload.cls", b"2")
        add(tar, "bad.jpg", b"this is not a jpeg")
        add(tar, "bad.cls", b"0")
    return shards, marker


def outside_files(root: Path, inside: Path) -> set[str]:
    return {str(p) for p in root.rglob("*") if inside not in p.parents and p != inside}


def test_reader_keeps_allowed_fields_only_and_never_follows_links(hostile):
    shards, marker = hostile
    samples = list(iter_tar(shards / "train-000000.tar"))
    assert [s["__key__"] for s in samples] == ["evil", "abs/evil2", "payload", "bad"]
    assert all(set(s) <= {"__key__", "__url__", "jpg", "cls", "json"} for s in samples)
    assert not marker.exists()


@pytest.mark.parametrize("fmt", ["webdataset", "lmdb"])
def test_shard_of_a_hostile_tar_stays_inside_the_output(hostile, tmp_path, fmt):
    shards, marker = hostile
    before = outside_files(tmp_path, tmp_path / "out")
    result = CliRunner().invoke(cli, ["shard", str(shards), "-o", str(tmp_path / "out"),
                                      "--format", fmt, "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert "4 records in -> 3 samples out, 1 skipped" in result.output  # bad.jpg is counted
    assert outside_files(tmp_path, tmp_path / "out") == before
    assert not marker.exists()
    if fmt == "webdataset":
        with tarfile.open(tmp_path / "out" / "train-000000.tar") as tar:
            names = tar.getnames()
        assert all("/" not in n and not n.startswith(".") for n in names), names
        assert "evil.jpg" in names and "abs__evil2.jpg" in names


def test_folder_output_from_hostile_keys_and_class_names_stays_inside(hostile, tmp_path):
    shards, marker = hostile
    out = tmp_path / "out"
    before = outside_files(tmp_path, out)
    result = CliRunner().invoke(cli, ["resize", str(shards), "-o", str(out), "--format",
                                      "folder", "--short-side", "16", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert outside_files(tmp_path, out) == before
    written = [p for p in out.rglob("*.jpg")]
    assert len(written) == 3 and all(out in p.parents for p in written)


def test_gigantic_member_header_is_a_clear_error(tmp_path):
    path = tmp_path / "huge.tar"
    info = tarfile.TarInfo("huge.jpg")
    info.size = MAX_MEMBER_BYTES + 1
    with open(path, "wb") as f:
        f.write(info.tobuf(format=tarfile.GNU_FORMAT))
        f.write(b"\0" * 4096)  # the data is not really there
    with pytest.raises(ShardError, match="over the .* limit"):
        list(iter_tar(path))
    result = CliRunner().invoke(cli, ["shard", str(path), "-o", str(tmp_path / "out"),
                                      "--jobs", "1"])
    assert result.exit_code == 1
    assert "corrupt or hostile" in result.output and "Traceback" not in result.output


def test_not_a_tar_is_a_clear_error(tmp_path):
    path = tmp_path / "train-000000.tar"
    path.write_bytes(b"\x89PNG not a tar at all" * 100)
    with pytest.raises(ShardError, match="not a readable tar shard"):
        list(iter_tar(path))
