"""Running a command's work: scan, scan-then-tag, learn, and where analysis runs (local pool, Dask)."""
