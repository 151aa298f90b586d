"""Sources (scan, readers), sinks (writers) and ledgers (manifest).

Sources: ``scan`` (any input -> :class:`~dataprep.io.source.Source`; folders and list files),
``manifest_source`` (.jsonl manifests), ``shard_source`` (WebDataset and LMDB as records),
``labels`` and ``files`` (what every source checks), ``decode`` (any image -> RGB).
Shards read back: ``readers`` (tar shards, any sink), ``lmdbread`` (LMDB, both layouts),
``fields`` (the stored json), ``caffe`` (the Datum codec), ``dataset`` (decoded items, lazy
views expanded). Sinks: ``writers`` (``WRITERS``, the LMDB sink), ``tarsink`` and
``tarpack`` (WebDataset), ``foldersink``, ``staging`` (the protocol they share), with
``tarformat`` and ``durable`` below them; ``manifest`` writes the ledgers beside the output.
"""
