"""The dataset cache shared by every domain's generator: ``outputs/datasets/<domain>-<name>-<config hash>.hdf5``."""
from __future__ import annotations

from pathlib import Path

from momawb.datasets import Dataset

__all__ = ["cached"]


def cached(path: Path, make) -> Dataset:
    """Load ``path``, or ``make()`` the dataset and save it there. Generation is deterministic,
    so when a concurrent worker publishes the same file first, its copy is loaded instead."""
    if path.exists():
        return Dataset.load(path)
    ds = make()
    try:
        ds.save(path)
    except FileExistsError:
        return Dataset.load(path)
    return ds
