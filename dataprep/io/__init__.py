"""Sources (scan, readers), sinks (writers) and ledgers (manifest)."""
