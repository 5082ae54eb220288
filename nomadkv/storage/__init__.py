"""Storage: the write-ahead log (``log``) and snapshots (``snapshot``). Files only."""
