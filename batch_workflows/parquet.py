"""Opening Parquet files for streaming."""

from __future__ import annotations

import os

import pyarrow.parquet as pq


def open_parquet(path: str | os.PathLike[str]) -> pq.ParquetFile:
    """A ParquetFile to stream from. Pre-buffering is off: with it, pyarrow keeps every column
    chunk it has read for as long as the file object lives, so streaming a file to its end held
    the whole file in memory (measured: 1.5 GB for 1.5 GB of result vectors; 0 without)."""
    return pq.ParquetFile(os.fspath(path), pre_buffer=False)
