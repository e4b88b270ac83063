"""Slice thumbnails for report cards: read through the scoring decode path, windowed, inline.

A card shows the slices the score came from, so they are read exactly as scoring read them:
the same readers (`mediqa_cli.io.read_files`: the scan's files grouped as in the walk, which
must give the same scan_id), the same physical units, and the same windowing
(`preprocess.normalise`: CT in its soft-tissue window, other grey data by robust percentiles
over the shown slices, colour kept). Each thumbnail is at most `THUMB_PX` a side, PNG for grey
and JPEG for colour, as a data: URI, so the page stays one file.

Privacy: pixels can carry identity where text was burned into them. Ultrasound, secondary
capture objects and images flagged `BurnedInAnnotation = YES` get no thumbnail unless the page
is made with `--include-phi`; the card says why.
"""

from __future__ import annotations

import base64
import io
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("mediqa")

THUMB_PX = 160
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"  # SC, and the multi-frame SC classes

# The raw files of a report row's scan, or None when they cannot be found.
Locator = Callable[[Mapping[str, Any]], Sequence[str] | None]


@dataclass
class Thumbnail:
    """One slice image: its index in the scan, a caption and the data: URI."""

    slice_index: int
    caption: str
    uri: str


@dataclass
class CardImages:
    """Thumbnails of one card, or why there are none (`withheld`)."""

    thumbnails: list[Thumbnail] = field(default_factory=list)
    withheld: str | None = None


def locate_under(root: str | os.PathLike[str]) -> Locator:
    """A locator for a report read back later: the row's `path` is relative to the input's
    parent folder, so it is looked up under `root` (that folder). A path with a pseudonymised
    component no longer exists there, and the card says the image was not found."""
    base = Path(root)

    def locate(row: Mapping[str, Any]) -> Sequence[str] | None:
        relative = row.get("path")
        if not relative:
            return None
        target = base / str(relative)
        if target.is_file():
            return [str(target)]
        if target.is_dir():
            return sorted(str(p) for p in target.iterdir()
                          if p.is_file() and not p.name.startswith("."))
        return None

    return locate


def locate_from(paths_by_scan: Mapping[str, Sequence[str]],
                inputs: Sequence[str] = ()) -> Locator:
    """A locator for the run that just scored: the raw paths it read, by scan_id; rows reused
    by --resume (no raw paths) are looked up under the inputs' parent folders."""
    fallbacks = [locate_under(os.path.dirname(os.path.abspath(p)) or os.sep) for p in inputs]

    def locate(row: Mapping[str, Any]) -> Sequence[str] | None:
        found = paths_by_scan.get(str(row.get("scan_id") or ""))
        for fallback in fallbacks:
            found = found or fallback(row)
        return found or None

    return locate


def card_images(row: Mapping[str, Any], locate: Locator, include_phi: bool = False,
                max_thumbnails: int = 4) -> CardImages:
    """Thumbnails of a row's worst slice and some of its other salient slices."""
    modality = str(row.get("modality") or "")
    if not include_phi and modality.upper() == "US":
        return CardImages(withheld=_withheld("ultrasound"))
    paths = locate(row)
    if not paths:
        return CardImages(withheld="image not found (moved, or a path component pseudonymised)")
    try:
        scan = _find_scan(paths, row)
        if scan is None:
            return CardImages(withheld="image not found (files changed since scoring)")
        if not include_phi:
            risk = burned_in_risk(scan.paths, str(row.get("modality") or scan.modality or ""),
                                  scan.kind)
            if risk:
                return CardImages(withheld=_withheld(risk))
        indices = _pick_slices(row, scan.n_slices, max_thumbnails)
        slices = [scan.read_slice(i) for i in indices]
        return CardImages(thumbnails=_thumbnails(slices, indices, row, scan.modality))
    except Exception as exc:  # noqa: BLE001 - a card without pictures, never a failed page
        log.warning("no thumbnail for scan %s: %s", row.get("scan_id"), type(exc).__name__)
        return CardImages(withheld=f"thumbnail failed ({type(exc).__name__})")


def _withheld(reason: str) -> str:
    return f"no thumbnail: {reason} (burned-in annotation risk; --include-phi shows it)"


def _find_scan(paths: Sequence[str], row: Mapping[str, Any]) -> Any:
    """The Scan among these files with the row's scan_id; else the only one of the row's shape
    (an archive mounted elsewhere changes absolute paths, hence scan ids)."""
    from mediqa_cli.io import Scan, read_files

    scans = [s for s in read_files(list(paths)) if isinstance(s, Scan)]
    for scan in scans:
        if scan.scan_id == row.get("scan_id"):
            return scan
    shape = (row.get("n_slices"), row.get("rows"), row.get("cols"))
    same = [s for s in scans if tuple(s.shape) == shape]
    return same[0] if len(same) == 1 else None


def burned_in_risk(paths: Sequence[str], modality: str, kind: str = "dicom") -> str | None:
    """Why the pixels may show burned-in text (None when no rule applies).

    Rules: ultrasound (scanners print patient data on screen captures), secondary capture SOP
    classes (screenshots, scanned documents), and BurnedInAnnotation = YES on any file.
    """
    if modality.upper() == "US":
        return "ultrasound"
    if kind != "dicom":
        return None
    import pydicom

    for path in paths:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True,
                                 specific_tags=["BurnedInAnnotation", "SOPClassUID", "Modality"])
        except Exception:  # noqa: BLE001 - unreadable header: the scan could not be shown
            return "header unreadable"
        if str(ds.get("Modality", "")).upper() == "US":
            return "ultrasound"
        if str(ds.get("SOPClassUID", "")).startswith(SECONDARY_CAPTURE_PREFIX):
            return "secondary capture"
        if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
            return "BurnedInAnnotation=YES"
    return None


def _pick_slices(row: Mapping[str, Any], n_slices: int, limit: int) -> list[int]:
    """The worst slice first, then other salient slices spread over the volume."""
    worst = row.get("worst_slice")
    salient = [int(i) for i in (row.get("salient_slices") or []) if 0 <= int(i) < n_slices]
    picks: list[int] = []
    if worst is not None and 0 <= int(worst) < n_slices:
        picks.append(int(worst))
    others = [i for i in salient if i not in picks]
    if not picks and not others:
        others = [n_slices // 2]
    room = max(0, limit - len(picks))
    if len(others) > room:
        others = [others[int(j)] for j in np.linspace(0, len(others) - 1, room).round()]
    return picks + sorted(set(others))


def _thumbnails(slices: list[np.ndarray], indices: list[int], row: Mapping[str, Any],
                modality: str | None) -> list[Thumbnail]:
    from mediqa_cli.preprocess import normalise, robust_range

    grey = [s for s in slices if s.ndim == 2]
    value_range = robust_range(np.concatenate([s.ravel() for s in grey])) if grey else None
    worst = row.get("worst_slice")
    out = []
    for index, pixels in zip(indices, slices):
        unit = normalise(pixels, modality, value_range)
        image = unit if pixels.ndim == 3 else unit[..., 0]
        caption = f"slice {index}" + (" (worst)" if worst is not None and index == worst else "")
        out.append(Thumbnail(index, caption, to_data_uri(image)))
    return out


def to_data_uri(unit: np.ndarray, size: int = THUMB_PX) -> str:
    """(rows, cols) or (rows, cols, 3) values in [0, 1] -> a data: URI at most `size` a side."""
    from PIL import Image

    data = np.clip(np.nan_to_num(unit) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    image = Image.fromarray(data)
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if data.ndim == 3:
        image.save(buffer, format="JPEG", quality=82)
        kind = "jpeg"
    else:
        image.save(buffer, format="PNG", optimize=True)
        kind = "png"
    return f"data:image/{kind};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"
