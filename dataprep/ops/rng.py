"""Per-sample random generators: derived from (seed, key, view, epoch) only."""

from __future__ import annotations

import hashlib

import numpy as np


def sample_rng(seed: int, key: str, view: int = 0, epoch: int = 0) -> np.random.Generator:
    """A generator that depends only on its arguments: same inputs, same draws, any process."""
    digest = hashlib.sha256(f"{seed}\x00{key}\x00{view}\x00{epoch}".encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


def stable_rank(seed: int, text: str) -> int:
    """A seeded, stable 64-bit hash used to rank keys (independent of input order)."""
    digest = hashlib.sha256(f"{seed}\x00{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big")
