"""The tar format, written and read directly: the WebDataset hot path without ``tarfile``.

Writing: :func:`member` packs one regular file as GNU tar bytes (header, data, padding), the
same bytes ``tarfile`` writes for a ``TarInfo`` with our fixed fields (mode 0644, uid/gid 0,
empty user and group names, a fixed mtime); a name over 100 bytes is refused (never a GNU
long-name or pax header, which readers that index a tar themselves misread). :func:`closing`
is the end of an archive (two zero blocks, padded to 10240-byte records). ``tarfile`` builds
each header through a ``TarInfo`` copy and a dozen small calls; packing them here costs a few
microseconds a member.

Reading: :func:`iter_members` walks an uncompressed tar stream header by header, verifying
each header's checksum, and yields ``(name, data)`` for the regular files it is asked for,
skipping the rest by seeking. GNU long names and pax ``path`` / ``size`` records are applied;
links, devices and directories are never followed. It follows ``tarfile``'s rules for where
member data lies, and is stricter than ``tarfile`` in one way: a damaged header or a file cut
short after the first member is an error, not a silent end of the archive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import BinaryIO

BLOCK = 512
NAME_BYTES = 100  # a header's name field: every member dataprep writes has a name that fits
RECORD = 20 * BLOCK  # tarfile's RECORDSIZE: an archive is padded to whole records
_NUL = b"\0"
_GNU_MAGIC = b"ustar  \0"
_POSIX_MAGIC = b"ustar\x0000"
_REGULAR = (b"0", b"\0", b"7")  # REGTYPE, AREGTYPE, CONTTYPE
# types whose data tarfile does not skip (it reads the next header right after them)
_NO_DATA = (b"1", b"2", b"3", b"4", b"5", b"6")  # LNK, SYM, CHR, BLK, DIR, FIFO


class TarFormatError(ValueError):
    """The bytes are not a readable tar stream (the caller names the file)."""


def _octal(n: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, n)


def _field(text: bytes, width: int) -> bytes:
    return text[:width] + _NUL * (width - len(text[:width]))


def _header(name: bytes, size: int, mode: int, mtime: int, typeflag: bytes,
            magic: bytes) -> bytes:
    head = b"".join((
        _field(name, 100), _octal(mode, 8), _octal(0, 8), _octal(0, 8), _octal(size, 12),
        _octal(mtime, 12), b"        ", typeflag, _field(b"", 100), magic,
        _field(b"", 32), _field(b"", 32), _field(b"", 8), _field(b"", 8), _field(b"", 155),
    ))
    head += _NUL * (BLOCK - len(head))
    checksum = sum(head)
    return head[:148] + b"%06o\0 " % checksum + head[156:]


def _padding(n: int) -> bytes:
    return _NUL * (-n % BLOCK)


def member_chunks(name: str, data: bytes, mtime: int, mode: int = 0o644) -> list[bytes]:
    """One regular file as GNU tar bytes: header(s), data, zero padding to 512 bytes; in pieces
    (to hand to ``writelines`` without copying ``data``)."""
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) > NAME_BYTES:
        # a GNU long-name or pax header is misread by readers that index tars themselves
        # (wids, DALI's wds2idx): writers shorten keys first (dataprep.io.tarpack.member_key)
        raise ValueError(f"tar member name {name[:60]!r}... has {len(raw)} bytes; at most "
                         f"{NAME_BYTES} fit a header")
    return [_header(raw, len(data), mode, mtime, b"0", _GNU_MAGIC), data, _padding(len(data))]


def member(name: str, data: bytes, mtime: int, mode: int = 0o644) -> bytes:
    """:func:`member_chunks`, joined."""
    return b"".join(member_chunks(name, data, mtime, mode))


def closing(offset: int) -> bytes:
    """The end of an archive whose members took ``offset`` bytes."""
    end = offset + 2 * BLOCK
    return _NUL * (2 * BLOCK + (-end % RECORD))


# -- reading ------------------------------------------------------------------------------------


def _number(field: bytes) -> int:
    """A numeric header field: NUL/space-terminated octal, or GNU base-256."""
    if field[:1] in (b"\x80", b"\xff"):
        n = int.from_bytes(field[1:], "big")
        return n - (1 << (8 * (len(field) - 1))) if field[:1] == b"\xff" else n
    text = field.split(_NUL, 1)[0].strip()
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise TarFormatError(f"invalid number {field!r} in a header") from None


def _text(field: bytes) -> str:
    return field.split(_NUL, 1)[0].decode("utf-8", "surrogateescape")


def _checksum_ok(block: bytes) -> bool:
    stored = _number(block[148:156])
    unsigned = sum(block[:148]) + 256 + sum(block[156:])  # the field counts as 8 spaces
    if stored == unsigned:
        return True
    high = sum(1 for b in block[:148] + block[156:] if b > 127)
    return stored == unsigned - 256 * high  # old tars summed signed chars


def _pax(data: bytes) -> dict[str, str]:
    """Records ``"%d %s=%s\\n"`` of a pax extended header."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            raise TarFormatError("malformed pax header") from None
        if length <= 0 or pos + length > len(data):
            raise TarFormatError("malformed pax header")
        record = data[space + 1:pos + length - 1]
        key, sep, value = record.partition(b"=")
        if sep:
            out[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


MAX_SIZE = 1 << 40  # no member of a shard is a terabyte: a larger size is damage or hostile


def _checked_size(size: int) -> int:
    if not 0 <= size <= MAX_SIZE:
        raise TarFormatError(f"member size {size} is out of range")
    return size


def is_header(block: bytes) -> bool:
    """Whether ``block`` is a tar header (a whole 512-byte block with a valid checksum)."""
    try:
        return len(block) == BLOCK and _checksum_ok(block)
    except TarFormatError:
        return False


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise TarFormatError(f"the file ends inside {what}")
    return data


def _skip(f: BinaryIO, n: int) -> None:
    if n:
        f.seek(n, 1)


def iter_members(f: BinaryIO, want: Callable[[str, int], bool],
                 ) -> Iterator[tuple[str, bytes]]:
    """``(name, data)`` for the regular files of the uncompressed tar stream ``f`` for which
    ``want(name, size)`` is true; the data of the others is skipped unread. ``want`` may raise
    to refuse a member (e.g. one too large)."""
    offset = 0
    long_name: str | None = None
    pax: dict[str, str] = {}
    while True:
        block = f.read(BLOCK)
        if not block:
            if offset == 0:
                raise TarFormatError("empty file")
            raise TarFormatError("the file ends without the end-of-archive blocks")
        if len(block) != BLOCK:
            raise TarFormatError("the file ends inside a header")
        if block == _NUL * BLOCK:
            return  # end of archive
        if not _checksum_ok(block):
            raise TarFormatError("bad checksum" if offset else "not a tar header (bad checksum)")
        offset += BLOCK
        typeflag = block[156:157]
        size = _checked_size(_number(block[124:136]))
        padded = size + (-size % BLOCK)
        if typeflag in (b"L", b"x", b"g", b"K"):  # meta-data for the next member
            if size > 1 << 20:
                raise TarFormatError(f"a {size:,}-byte extended header")
            data = _read_exact(f, padded, "an extended header")[:size]
            offset += padded
            if typeflag == b"L":
                long_name = _text(data)
            elif typeflag == b"x":
                pax = _pax(data)
            continue
        name = _text(block[0:100])
        if block[257:265] == _POSIX_MAGIC and typeflag not in (b"L", b"K"):
            prefix = _text(block[345:500])
            if prefix:
                name = f"{prefix}/{name}"
        if long_name is not None:
            name = long_name
        if "path" in pax:
            name = pax["path"]
        if "size" in pax:
            if not (pax["size"].isascii() and pax["size"].isdigit()):
                raise TarFormatError(f"malformed pax size {pax['size'][:40]!r}")
            size = _checked_size(int(pax["size"]))
            padded = size + (-size % BLOCK)
        long_name, pax = None, {}
        regular = typeflag in _REGULAR and not (typeflag == b"\0" and name.endswith("/"))
        if regular and want(name, size):
            data = _read_exact(f, size, f"member {name!r}")
            _skip(f, padded - size)
            offset += padded
            yield name, data
        elif typeflag not in _NO_DATA and not (typeflag == b"\0" and name.endswith("/")):
            _skip(f, padded)  # a regular file not wanted, or an unknown type: its data
            offset += padded
