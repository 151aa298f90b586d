"""Random bytes and near-valid text into every parser of untrusted input: only
:class:`DataprepError` subclasses may come out (a clean one-line error), never another
exception (a traceback).

Near-valid inputs are valid files with a few bytes replaced and a random cut, or valid
layouts whose values are random JSON. Each example rewrites the same few files in one
folder, so the whole module stays around 15 s.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import lmdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dataprep.cli import cli
from dataprep.errors import DataprepError
from dataprep.io import lmdbread, readers
from dataprep.io.decode import open_image
from dataprep.io.manifest_source import scan_manifest
from dataprep.io.scan import scan, scan_list
from dataprep.jobs.stats import load_stats
from dataprep.recipe import load_recipe

FUZZ = settings(max_examples=100, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def only_clean_errors(fn: Callable[[], Any]) -> None:
    """Run ``fn``; a DataprepError is a clean refusal, any other exception fails the test."""
    try:
        fn()
    except DataprepError as exc:
        assert str(exc) and "\n" not in str(exc).strip(), repr(exc)


def image_bytes(fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 16), (10, 200, 30)).save(buf, fmt, **kwargs)
    return buf.getvalue()


SEED_IMAGES = [image_bytes("JPEG"), image_bytes("JPEG", progressive=True), image_bytes("PNG"),
               image_bytes("GIF"), image_bytes("WEBP"), image_bytes("BMP"), image_bytes("TIFF")]


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` with up to 8 bytes replaced, then cut at a random length."""
    data = bytearray(seed)
    for pos, value in draw(st.lists(st.tuples(st.integers(0, len(seed) - 1),
                                              st.integers(0, 255)), max_size=8)):
        data[pos] = value
    return bytes(data[: draw(st.integers(0, len(data)))])


def near(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=600), *(mutated(s) for s in seeds))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=10)


def dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# --- list files ------------------------------------------------------------------------------

LIST_SEED = b"cat/a.jpg 0\ndog/b b.png\t1\n# comment\n\n/abs/c.jpg 2\n"


@FUZZ
@given(data=near([LIST_SEED]))
def test_list_file(box: Path, data: bytes) -> None:
    (box / "l.txt").write_bytes(data)
    only_clean_errors(lambda: scan_list(box / "l.txt"))


@FUZZ
@given(lines=st.lists(st.tuples(st.text(max_size=10), st.text(max_size=6)), min_size=1,
                      max_size=5))
def test_list_file_of_random_words(box: Path, lines: list[tuple[str, str]]) -> None:
    text = "\n".join(f"{path} {label}" for path, label in lines)
    (box / "w.txt").write_text(text, encoding="utf-8", errors="surrogatepass")
    only_clean_errors(lambda: scan_list(box / "w.txt"))


# --- manifests and classes.json --------------------------------------------------------------

MANIFEST_SEED = (b'{"key": "a", "path": "/x/a.jpg", "label": 0, "class_name": "cat", '
                 b'"split": "train"}\n{"key": "b", "path": "/x/b.jpg", "label": 1}\n')


@FUZZ
@given(data=near([MANIFEST_SEED]), classes=near([b'{"cat": 0, "dog": 1}']))
def test_manifest_and_classes_json(box: Path, data: bytes, classes: bytes) -> None:
    folder = box / "m"
    folder.mkdir(exist_ok=True)
    (folder / "train.jsonl").write_bytes(data)
    (folder / "classes.json").write_bytes(classes)
    only_clean_errors(lambda: list(scan_manifest(folder / "train.jsonl")))


FIELDS = ("key", "path", "label", "class_name", "split", "group")


@FUZZ
@given(records=st.lists(st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=6),
                        min_size=1, max_size=4),
       classes=JSON)
def test_manifest_fields_of_random_json(box: Path, records: list[dict], classes: Any) -> None:
    folder = box / "mj"
    folder.mkdir(exist_ok=True)
    (folder / "val.jsonl").write_bytes(b"\n".join(dumps(r) for r in records))
    (folder / "classes.json").write_bytes(dumps(classes))
    only_clean_errors(lambda: list(scan_manifest(folder / "val.jsonl")))


# --- recipes ---------------------------------------------------------------------------------

RECIPE_SEED = b'[tencrop]\nshort_side = 256\ncrop = 224\nformat = "webdataset"\n'
VALUES = st.sampled_from(["1e400", "-1e400", "nan", "1e9", "-1", "0", "3", "true", '"abc"',
                          '"1GB"', "[1, 2]", "{a = 1}", '"lmdb"', "2.5", '""'])
KEYS = st.sampled_from(["short_side", "crop", "quality", "format", "max_bytes", "max_count",
                        "max_pixels", "max_aspect", "jobs", "five", "views", "seed",
                        "color_jitter", "pca_lighting", "max_disk", "on_error"])


def parse_tencrop_flags(recipe: Path) -> None:
    """What `dataprep tencrop SRC -o OUT --recipe R` does before running: parse and convert
    every flag, with the recipe as defaults."""
    try:
        cli.commands["tencrop"].make_context("tencrop", ["--recipe", str(recipe), "src", "-o",
                                                         "out"])
    except click.ClickException as exc:  # a usage error: one line, exit 2
        assert "Traceback" not in exc.format_message()


@FUZZ
@given(data=near([RECIPE_SEED]))
def test_recipe_bytes(box: Path, data: bytes) -> None:
    (box / "r.toml").write_bytes(data)
    only_clean_errors(lambda: load_recipe(box / "r.toml"))
    parse_tencrop_flags(box / "r.toml")


@FUZZ
@given(pairs=st.lists(st.tuples(KEYS, VALUES), max_size=4, unique_by=lambda kv: kv[0]))
def test_recipe_values(box: Path, pairs: list[tuple[str, str]]) -> None:
    text = "[tencrop]\n" + "".join(f"{k} = {v}\n" for k, v in pairs)
    (box / "v.toml").write_text(text)
    parse_tencrop_flags(box / "v.toml")


# --- stats.json ------------------------------------------------------------------------------

STATS_SEED = dumps({"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2], "eigval": [0.2, 0.02, 0.01],
                    "eigvec": [[0.5, 0.7, 0.4], [0.5, 0.0, -0.8], [0.5, -0.7, 0.4]]})


@FUZZ
@given(data=st.one_of(near([STATS_SEED]),
                      st.dictionaries(st.sampled_from(["mean", "std", "eigval", "eigvec"]),
                                      JSON).map(dumps)))
def test_stats_json(box: Path, data: bytes) -> None:
    (box / "stats.json").write_bytes(data)
    only_clean_errors(lambda: load_stats(box / "stats.json"))


# --- images ----------------------------------------------------------------------------------


@FUZZ
@given(data=near(SEED_IMAGES))
def test_open_image_bytes(data: bytes) -> None:
    only_clean_errors(lambda: open_image(data, max_aspect=100.0, resize_short_side=64,
                                         upscale=True))


# --- tar shards ------------------------------------------------------------------------------


def tar_of(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


TAR_SEED = tar_of([("a.jpg", SEED_IMAGES[0]), ("a.cls", b"1"),
                   ("a.json", b'{"key": "a", "label": 1}'), ("b.png", SEED_IMAGES[2])])
MEMBER = st.one_of(st.binary(max_size=40), JSON.map(dumps), st.sampled_from(
    [b"-1", b"1e9", b"999999999999", b"x", b"true", b" 7 ", b"\xff\xfe", b"[1]", b"null"]))


def read_shard_folder(folder: Path) -> None:
    """Everything dataprep reads from a shard folder: the tar stream, its samples, and the
    folder as a source (its _info.json and ledger, then each record)."""
    for shard in sorted(folder.glob("*.tar")):
        only_clean_errors(lambda s=shard: [readers.to_sample(d) for d in readers.iter_tar(s)
                                           if readers.image_field(d)])
    only_clean_errors(lambda: list(scan(folder)))


@FUZZ
@given(data=near([TAR_SEED, tar_of([("x.jpg", b"")])]))
def test_tar_bytes(box: Path, data: bytes) -> None:
    folder = box / "t"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    (folder / "train-000000.tar").write_bytes(data)
    read_shard_folder(folder)


@FUZZ
@given(cls=MEMBER, meta=MEMBER, info=st.one_of(st.none(), JSON.map(dumps), near([dumps(
    {"splits": {"train": {"filenames": ["train-000000.tar"], "num_samples": 1}}})])),
    ledger=st.one_of(st.none(), JSON.map(dumps)))
def test_tar_members_and_side_files(box: Path, cls: bytes, meta: bytes, info: bytes | None,
                                    ledger: bytes | None) -> None:
    folder = box / "tm"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    (folder / "train-000000.tar").write_bytes(tar_of([
        ("k.jpg", SEED_IMAGES[0]), ("k.cls", cls), ("k.json", meta),
        ("only.json", meta)]))  # a sample without an image: a skip, not a crash
    for name, content in (("_info.json", info), ("dataprep.json", ledger)):
        if content is not None:
            (folder / name).write_bytes(content)
    read_shard_folder(folder)


# --- LMDB ------------------------------------------------------------------------------------


def read_lmdb(env: Path) -> None:
    only_clean_errors(lambda: lmdbread.lmdb_header(env))
    only_clean_errors(lambda: list(lmdbread.iter_lmdb(env)))
    only_clean_errors(lambda: list(scan(env)))


@FUZZ
@given(data=st.binary(max_size=20_000))
def test_random_bytes_as_data_mdb(box: Path, data: bytes) -> None:
    env = box / "r.lmdb"
    shutil.rmtree(env, ignore_errors=True)
    env.mkdir()
    (env / "data.mdb").write_bytes(data)
    read_lmdb(env)


@FUZZ
@given(entries=st.dictionaries(
    st.sampled_from([b"__len__", b"__classes__", b"00000000.cls", b"00000000.json",
                     b"00000000.image", b"00000001.image"]), MEMBER, min_size=1))
def test_lmdb_with_random_entries(box: Path, entries: dict[bytes, bytes]) -> None:
    env_path = box / "e.lmdb"
    shutil.rmtree(env_path, ignore_errors=True)
    env = lmdb.open(str(env_path), map_size=1 << 20, subdir=True)
    with env.begin(write=True) as txn:
        for key, value in entries.items():
            txn.put(key, value)
    env.close()
    for extra in ("lock.mdb",):
        if os.path.exists(env_path / extra):
            os.remove(env_path / extra)
    read_lmdb(env_path)
