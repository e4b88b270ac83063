"""The unit of work: a Scan (one series/volume/image) and a ScanProblem (one that can't be read).

Readers build these lazily: a Scan holds geometry and hints, and reads pixel data one slice at a
time through `read_slice`, so a huge volume or a long series never sits in memory whole.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

# Where a modality/anatomy value came from; reported next to it.
SOURCE_TAG = "dicom-tag"
SOURCE_HEADER = "header"
SOURCE_SIDECAR = "sidecar"  # a BIDS JSON sidecar beside a NIfTI file
SOURCE_FILENAME = "file-name"
SOURCE_OVERRIDE = "override"
SOURCE_PREDICTED = "predicted"
SOURCE_NONE = "none"


@dataclass
class Scan:
    """One scorable image stack.

    Slices are float32 arrays shaped (rows, cols) for grey data or (rows, cols, 3) for colour,
    already in physical units where those exist (HU for CT after rescale; MONOCHROME1 inverted
    so that higher is brighter). `spacing` is (slice, row, col) in mm, NaN where unknown.
    """

    scan_id: str
    paths: tuple[str, ...]
    kind: str  # "dicom" | "nifti" | "raster"
    shape: tuple[int, int, int]  # (n_slices, rows, cols)
    spacing: tuple[float, float, float]
    read_slice: Callable[[int], np.ndarray]
    channels: int = 1
    modality: str | None = None
    modality_source: str = SOURCE_NONE
    anatomy: str | None = None
    anatomy_source: str = SOURCE_NONE
    description: str = ""  # non-identifying hints (series/protocol description) for prompts
    notes: list[str] = field(default_factory=list)
    phi: dict[str, str] = field(default_factory=dict)  # only reported with --include-phi
    fingerprint: str = ""
    identity: dict[str, str] = field(default_factory=dict)  # study/series UIDs, station: private
    descriptors: dict[str, object] = field(default_factory=dict)  # manufacturer, model, ...

    @property
    def n_slices(self) -> int:
        return self.shape[0]

    def iter_slices(self, indices: Sequence[int] | None = None) -> Iterator[np.ndarray]:
        """Yield slices one by one (all, or the given indices in order)."""
        for i in range(self.n_slices) if indices is None else indices:
            yield self.read_slice(int(i))


@dataclass
class ScanProblem:
    """A path (or group) that yields no Scan: a report row with status error or skipped."""

    paths: tuple[str, ...]
    status: str  # "error" | "skipped" | "ignored" (not an image: counted, not reported)
    message: str
    kind: str = "unknown"
    scan_id: str = ""
    fingerprint: str = ""
    phi: dict[str, str] = field(default_factory=dict)  # tags, when a header could be read
    identity: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.scan_id:
            self.scan_id = make_scan_id(self.paths)
        if not self.fingerprint:
            self.fingerprint = fingerprint_paths(self.paths)


def make_scan_id(paths: Sequence[str], extra: str = "") -> str:
    """A stable, non-identifying id: a hash of the sorted file paths (plus a series/volume key).

    It contains no tag values, so it leaks nothing, and it stays the same between runs so that
    --resume and spreadsheets can key on it.
    """
    digest = hashlib.sha256()
    for path in sorted(os.path.abspath(p) for p in paths):
        digest.update(path.encode("utf-8", "surrogateescape"))
        digest.update(b"\0")
    digest.update(extra.encode())
    return digest.hexdigest()[:16]


def fingerprint_paths(paths: Sequence[str]) -> str:
    """Size + mtime of every file: changes when any file is rewritten, cheap to compute."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        try:
            st = os.stat(path)
            stamp = f"{path}|{st.st_size}|{st.st_mtime_ns}"
            digest.update(stamp.encode("utf-8", "surrogateescape"))
        except OSError:
            digest.update(f"{path}|missing".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:16]

