"""The fields of a stored sample (tar member suffixes, LMDB entries) and the checks every
shard reader applies to them: which fields hold the image, and the json metadata.

Shared by the tar reader (:mod:`dataprep.io.readers`) and the LMDB reader
(:mod:`dataprep.io.lmdbread`), so both read a sample's metadata alike.
"""

from __future__ import annotations

import json
from typing import Any

from dataprep.errors import ShardError

IMAGE_FIELDS = ("jpg", "jpeg", "png", "webp")


def stored_meta(meta: dict[str, Any], key: str) -> dict[str, Any]:
    """A stored json member as sample metadata: the schema's nulls mean "does not apply", so
    they are dropped (metadata reads as older files do), and ``key_full`` is kept only for a
    key that was shortened."""
    meta = {k: v for k, v in meta.items() if v is not None}
    if meta.get("key_full") == key:
        del meta["key_full"]
    return meta


def parse_json(raw: bytes, where: str) -> Any:
    """``raw`` as JSON; text that is not is a :class:`ShardError` naming ``where``."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested too deep
        raise ShardError(f"{where} is not JSON ({type(exc).__name__}); the shard is damaged "
                         "or not dataprep's") from None


def member_json(raw: bytes, where: str) -> dict[str, Any]:
    """A ``.json`` member or LMDB entry: a JSON object, else a :class:`ShardError`."""
    meta = parse_json(raw, f"{where}: metadata")
    if not isinstance(meta, dict):
        raise ShardError(f"{where}: metadata is a JSON {type(meta).__name__}, not an object; "
                         "the shard is damaged or not dataprep's")
    return meta
