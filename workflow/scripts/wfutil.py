"""What every workflow script shares: logging into the rule's log file and atomic writes.

An output is written under a temporary name in its own folder and moved into place with
os.replace only when it is complete, so a job that is killed leaves nothing that looks
finished.
"""

import contextlib
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np


def start(snakemake, tensorflow=True):
    """Send this job's stdout, stderr (Python and C level) and logging to the rule's log.

    With ``tensorflow`` (for scripts that run it), TensorFlow is imported here, before any
    Keras import, without its start-up messages; EXACTSNN_VERBOSE=1 in the environment keeps
    them in the log.
    """
    log = open(snakemake.log[0], "w", buffering=1)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    logging.basicConfig(
        stream=log,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        force=True,
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if tensorflow:
        from exactsnn.ops import import_tensorflow

        import_tensorflow()
    return logging.getLogger(snakemake.rule)


@contextlib.contextmanager
def atomic(path):
    """Yield a temporary path next to `path` (same suffix); on success move it to `path`."""
    from exactsnn.serialize import atomic as atomic_file

    with atomic_file(path) as tmp:
        yield str(tmp)


def write_text(path, text):
    with atomic(path) as tmp:
        Path(tmp).write_text(text)


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def write_npz(path, **arrays):
    with atomic(path) as tmp:
        np.savez(tmp, **arrays)


def read_json(path):
    return json.loads(Path(path).read_text())


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
