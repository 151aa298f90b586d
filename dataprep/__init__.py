"""dataprep: folders of labelled images -> training-ready shards, and a trainer that streams them.

The public API mirrors the CLI verbs. Importing it loads only the standard library, Pillow and
numpy; heavy dependencies load inside the functions that need them.
"""

from __future__ import annotations

from dataprep._version import __version__

__all__ = ["__version__", "augment", "load_recipe", "open_dataset", "preview", "resize", "run",
           "scan", "shard", "split", "stats", "tencrop", "verify"]


def __getattr__(name: str):
    # Lazy: `import dataprep` stays cheap; each verb imports its job module on first use.
    if name == "split":
        from dataprep.jobs.split import split
        return split
    if name == "tencrop":
        from dataprep.jobs.tencrop import tencrop
        return tencrop
    if name == "resize":
        from dataprep.jobs.tencrop import resize
        return resize
    if name == "augment":
        from dataprep.jobs.augment import augment
        return augment
    if name == "stats":
        from dataprep.jobs.stats import stats
        return stats
    if name == "preview":
        from dataprep.jobs.preview import preview
        return preview
    if name == "shard":
        from dataprep.jobs.shard import shard
        return shard
    if name == "run":
        from dataprep.jobs.run import run
        return run
    if name == "scan":
        from dataprep.io.scan import scan
        return scan
    if name == "open_dataset":
        from dataprep.io.dataset import open_dataset
        return open_dataset
    if name == "verify":
        from dataprep.jobs.verify import verify
        return verify
    if name == "audit":
        from dataprep.jobs.audit import audit
        return audit
    if name == "load_recipe":
        from dataprep.recipe import load_recipe
        return load_recipe
    raise AttributeError(f"module 'dataprep' has no attribute {name!r}")
