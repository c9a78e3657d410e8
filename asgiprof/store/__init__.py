"""The output directory (OUT): the only code that knows its file names and formats.

record/ writes OUT through this package as sampling goes; `load_profile` reads it back into
the `Profile` that analyze/ takes. See outdir.py for the files.
"""

from asgiprof.store.outdir import (
    FORMAT,
    GIL_LOG,
    LOAD,
    LOAD_LOG,
    META,
    PYSPY_LOG,
    RAW_DIR,
    RESOURCES,
    ROUTES,
    SERVER_LOG,
    chunk_name,
    default_out_dir,
    discard,
    discard_if_empty,
    load_load,
    load_routes,
    prepare_out_dir,
    read_chunk_meta,
    seal_chunk,
    write_chunk_meta,
    write_json,
    write_load,
    write_meta,
    write_routes,
)
from asgiprof.store.profile import MAX_ERROR_SHARE, MIN_COVERAGE, load_profile, sampling_problems

__all__ = [
    "FORMAT",
    "GIL_LOG",
    "LOAD",
    "LOAD_LOG",
    "MAX_ERROR_SHARE",
    "META",
    "MIN_COVERAGE",
    "PYSPY_LOG",
    "RAW_DIR",
    "RESOURCES",
    "ROUTES",
    "SERVER_LOG",
    "chunk_name",
    "default_out_dir",
    "discard",
    "discard_if_empty",
    "load_load",
    "load_profile",
    "load_routes",
    "prepare_out_dir",
    "read_chunk_meta",
    "sampling_problems",
    "seal_chunk",
    "write_chunk_meta",
    "write_json",
    "write_load",
    "write_meta",
    "write_routes",
]
