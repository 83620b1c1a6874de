"""Data shipped inside the package, read through ``importlib.resources`` (checkout, editable install, wheel).

``dr10_reference/`` holds the real DESI Legacy Imaging Surveys DR10 reference sample: it calibrates the
synthetic sky and checks readers and metrics against real pixels. ``dr10_reference/README.md`` describes the
files, ``dr10_reference/PROVENANCE.md`` gives their origin and sha256.

>>> import pandas as pd
>>> with reference_file("bricks_conditions.csv") as p:
...     len(pd.read_csv(p))
44
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import as_file, files
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath

from lensaudit.errors import InputError

REFERENCE_FOLDER = "dr10_reference"


def reference_dir() -> Traversable:
    """The packaged DR10 reference folder (a ``pathlib.Path`` whenever the package is installed as files).

    >>> sorted(p.name for p in reference_dir().iterdir() if p.name.endswith(".csv"))
    ['bricks_conditions.csv', 'desi_candidates.csv', 'regions_conditions.csv']
    """
    d = files(__name__) / REFERENCE_FOLDER
    if not d.is_dir():
        raise InputError(
            f"the packaged DR10 reference folder lensaudit/data/{REFERENCE_FOLDER}/ is missing; "
            "reinstall lensaudit"
        )
    return d


def reference_path(name: str) -> Traversable:
    """One packaged reference file, by its name inside the folder (``"cutouts/<id>.npz"`` for a cutout).

    Use :func:`reference_file` where a real filesystem path is needed.

    >>> reference_path("cutouts/0003m005_293.npz").name
    '0003m005_293.npz'
    >>> reference_path("no_such_table.csv")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lensaudit.errors.InputError: the DR10 reference file no_such_table.csv is not in the package ...
    """
    p = reference_dir()
    for part in PurePosixPath(name).parts:
        p = p / part
    if not p.is_file():
        raise InputError(
            f"the DR10 reference file {name} is not in the package "
            f"(lensaudit/data/{REFERENCE_FOLDER}/); reinstall lensaudit"
        )
    return p


@contextmanager
def reference_file(name: str) -> Iterator[Path]:
    """A real filesystem path to one packaged reference file for the duration of the ``with`` block
    (``importlib.resources.as_file``: the file itself, or a temporary copy if the package is zipped).

    >>> import numpy as np
    >>> with reference_file("cutouts/0003m005_293.npz") as p, np.load(p) as d:
    ...     d["cutout"].shape
    (101, 101, 3)
    """
    with as_file(reference_path(name)) as p:
        yield Path(p)


def reference_names(subfolder: str = "", suffix: str = "") -> list[str]:
    """Sorted names (relative to the reference folder) of the files in ``subfolder`` that end with ``suffix``.

    >>> reference_names("cutouts", ".npz")[:2]
    ['cutouts/0001m040_4091.npz', 'cutouts/0001m060_2396.npz']
    """
    d = reference_dir()
    for part in PurePosixPath(subfolder).parts:
        d = d / part
    if not d.is_dir():
        raise InputError(
            f"the DR10 reference subfolder {subfolder}/ is not in the package "
            f"(lensaudit/data/{REFERENCE_FOLDER}/); reinstall lensaudit"
        )
    prefix = f"{PurePosixPath(subfolder)}/" if subfolder else ""
    return sorted(prefix + p.name for p in d.iterdir() if p.is_file() and p.name.endswith(suffix))
