"""The tar packer and parser of dataprep.io.tarformat against Python's own tarfile."""

from __future__ import annotations

import io
import tarfile

import pytest

from dataprep.errors import ShardError
from dataprep.io import tarformat
from dataprep.io.readers import iter_tar

MTIME = 946684800
NAMES = ["a.jpg", "x" * 96 + ".jpg", "x" * 97 + ".jpg", "y" * 150 + ".json",
         "dir/sub/k_v3.cls", "ünïcode-name.jpg", "z" * 60 + "/" + "w" * 70 + ".png"]
# what dataprep writes: names that fit the 100-byte header field (the longer ones are read only)
WRITE_NAMES = [n for n in NAMES if len(n.encode()) <= 100]


def data_for(i: int) -> bytes:
    return bytes((i * 7 + j) % 251 for j in range(i * 300 + (i % 3)))


def tarfile_archive(fmt: int, names=NAMES, **fields) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for i, name in enumerate(names):
            data = data_for(i)
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), MTIME, 0o644
            info.uname = info.gname = ""
            for k, v in fields.items():
                setattr(info, k, v)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("name", WRITE_NAMES)
@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, 5000])
def test_member_bytes_equal_tarfiles_gnu_output(name, size):
    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, MTIME, 0o644
    info.uname = info.gname = ""
    expected = info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    expected += data + b"\0" * (-size % 512)
    assert tarformat.member(name, data, MTIME) == expected


def test_whole_archive_equals_tarfiles_and_reads_back():
    packed = b"".join(tarformat.member(n, data_for(i), MTIME)
                      for i, n in enumerate(WRITE_NAMES))
    packed += tarformat.closing(len(packed))
    assert packed == tarfile_archive(tarfile.GNU_FORMAT, WRITE_NAMES)
    assert len(packed) % tarformat.RECORD == 0
    got = list(tarformat.iter_members(io.BytesIO(packed), lambda name, size: True))
    assert got == [(n, data_for(i)) for i, n in enumerate(WRITE_NAMES)]
    # one header per member: no GNU long-name ("L") or pax ("x") header among them
    with tarfile.open(fileobj=io.BytesIO(packed)) as tar:
        assert [m.type for m in tar] == [tarfile.REGTYPE] * len(WRITE_NAMES)


@pytest.mark.parametrize("name", ["x" * 97 + ".jpg", "y" * 150 + ".json", "é" * 50 + ".j"])
def test_names_over_100_bytes_are_refused_never_given_a_long_name_header(name):
    assert len(name.encode()) > 100
    with pytest.raises(ValueError, match="at most 100"):
        tarformat.member(name, b"data", MTIME)


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_reads_what_tarfile_writes_in_every_format(fmt):
    names = NAMES if fmt != tarfile.USTAR_FORMAT else [n for n in NAMES if len(n) <= 100
                                                        or "/" in n]
    raw = tarfile_archive(fmt, names)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        expected = [(m.name, tar.extractfile(m).read()) for m in tar]
    got = list(tarformat.iter_members(io.BytesIO(raw), lambda name, size: True))
    assert got == expected
    assert [n for n, _ in got] == names


def test_unwanted_members_are_skipped_and_links_never_yield_data():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in (("keep.jpg", b"jpeg"), ("skip.bin", b"x" * 3000)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("link.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
        folder = tarfile.TarInfo("folder")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        info = tarfile.TarInfo("last.cls")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"3"))
    asked = []

    def want(name: str, size: int) -> bool:
        asked.append(name)
        return not name.endswith(".bin")

    got = list(tarformat.iter_members(io.BytesIO(buf.getvalue()), want))
    assert got == [("keep.jpg", b"jpeg"), ("last.cls", b"3")]
    assert asked == ["keep.jpg", "skip.bin", "last.cls"]  # links and folders are not offered


def test_damage_is_an_error_not_a_silent_end():
    raw = bytearray(tarfile_archive(tarfile.GNU_FORMAT))
    second = 512 + len(data_for(0)) + (-len(data_for(0)) % 512)
    broken = bytes(raw[:second]) + b"\x07" + bytes(raw[second + 1:])  # damage member 2's header
    with pytest.raises(tarformat.TarFormatError, match="bad checksum"):
        list(tarformat.iter_members(io.BytesIO(broken), lambda name, size: True))
    with pytest.raises(tarformat.TarFormatError, match="ends inside"):
        list(tarformat.iter_members(io.BytesIO(bytes(raw[:second + 600])),
                                    lambda name, size: True))
    with pytest.raises(tarformat.TarFormatError, match="empty file"):
        list(tarformat.iter_members(io.BytesIO(b""), lambda name, size: True))


def test_iter_tar_reads_compressed_tars_through_tarfile(tmp_path):
    names = ["s1.jpg", "s1.cls", "s2.jpg", "s2.cls"]
    plain = tarfile_archive(tarfile.GNU_FORMAT, names)
    (tmp_path / "plain.tar").write_bytes(plain)
    with tarfile.open(tmp_path / "packed.tar", "w:gz") as out, \
            tarfile.open(fileobj=io.BytesIO(plain)) as src:
        for m in src:
            out.addfile(m, src.extractfile(m))
    a = list(iter_tar(tmp_path / "plain.tar"))
    b = list(iter_tar(tmp_path / "packed.tar"))
    for d in a + b:
        d.pop("__url__")
    assert a == b
    assert [d["__key__"] for d in a] == ["s1", "s2"] and a[1]["cls"] == data_for(3)


def test_iter_tar_names_the_shard_in_errors(tmp_path):
    path = tmp_path / "cut.tar"
    path.write_bytes(tarfile_archive(tarfile.GNU_FORMAT)[:1500])
    with pytest.raises(ShardError, match="cut.tar: not a readable tar shard"):
        list(iter_tar(path))


def pax_member(name: str, data: bytes, size_record: str) -> bytes:
    """A pax header claiming ``size=size_record`` for the member after it, then the member."""
    record = f"size={size_record}\n"
    line = f"{len(record) + 3} {record}"
    line = f"{len(line)} {record}" if len(line) != len(record) + 3 else line
    assert len(line) == int(line.split(" ", 1)[0])
    pax = line.encode()
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = tarfile.XHDTYPE, len(pax)
    head = info.tobuf(tarfile.USTAR_FORMAT) + pax + b"\0" * (-len(pax) % 512)
    return head + tarformat.member(name, data, MTIME)


@pytest.mark.parametrize("name", ["x.bin", "k.jpg"])  # skipped, then read
@pytest.mark.parametrize("size", ["-1536", "-1", str(10**30), "12a", "１２"])
def test_hostile_pax_sizes_are_errors_not_hangs(tmp_path, name, size):
    raw = pax_member(name, b"x" * 100, size) + tarformat.member("ok.cls", b"1", MTIME)
    path = tmp_path / "hostile.tar"
    path.write_bytes(raw + tarformat.closing(len(raw)))
    with pytest.raises(ShardError, match="not a readable tar shard"):
        list(iter_tar(path))  # a hang here would be the bug (a size seeking backwards)


def test_a_base256_size_beyond_any_file_is_an_error(tmp_path):
    block = bytearray(tarformat.member("huge.bin", b"", MTIME)[:512])
    block[124:136] = b"\x80" + b"\xff" * 11  # GNU base-256: about 2**88 bytes
    block[148:156] = b"        "
    block[148:156] = b"%06o\0 " % sum(block)
    path = tmp_path / "huge.tar"
    path.write_bytes(bytes(block) + b"\0" * 1024)
    with pytest.raises(ShardError, match="out of range"):
        list(iter_tar(path))


def test_iter_tar_reads_lzma_and_xz_tars_through_tarfile(tmp_path):
    import lzma

    plain = tarfile_archive(tarfile.GNU_FORMAT, ["s1.jpg", "s1.cls"])
    (tmp_path / "plain.tar").write_bytes(plain)
    (tmp_path / "a.tar.lzma").write_bytes(lzma.compress(plain, format=lzma.FORMAT_ALONE))
    (tmp_path / "a.tar.xz").write_bytes(lzma.compress(plain))
    expected = [{k: v for k, v in d.items() if k != "__url__"}
                for d in iter_tar(tmp_path / "plain.tar")]
    assert expected and expected[0]["jpg"] == data_for(0)
    for name in ("a.tar.lzma", "a.tar.xz"):
        got = [{k: v for k, v in d.items() if k != "__url__"} for d in iter_tar(tmp_path / name)]
        assert got == expected, name


def test_the_pax_size_record_is_applied(tmp_path):
    # the control for the hostile cases: a truthful pax size reads back; a shorter one is
    # obeyed too (tarfile does the same), leaving the rest of the data to be read as a header
    raw = pax_member("k.jpg", b"x" * 100, "100") + tarformat.member("k.cls", b"1", MTIME)
    path = tmp_path / "pax.tar"
    path.write_bytes(raw + tarformat.closing(len(raw)))
    assert [d["jpg"] for d in iter_tar(path)] == [b"x" * 100]
    with tarfile.open(path) as tar:
        assert tar.getmember("k.jpg").size == 100
    short = pax_member("k.jpg", b"x" * 100, "40")
    path.write_bytes(short + tarformat.closing(len(short)))
    with tarfile.open(path) as tar:
        assert tar.getmember("k.jpg").size == 40
    assert [d["jpg"] for d in iter_tar(path)] == [b"x" * 40]
