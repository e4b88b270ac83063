"""2D raster images (PNG, JPEG, TIFF, BMP): fundus photos, histology tiles, exported X-rays.

TIFF goes through tifffile (16-bit, multi-page, big microscopy files); the rest through Pillow.
Colour stays colour (RGB, 0..255 for 8-bit); alpha is dropped; palettes are expanded.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from mediqa_cli.io.scan import (
    SOURCE_FILENAME,
    SOURCE_NONE,
    Scan,
    ScanProblem,
    fingerprint_paths,
    make_scan_id,
)
from mediqa_cli.taxonomy import anatomy_from_text

RASTER_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

# Larger images are refused rather than decoded: 400 Mpx of float32 RGB is ~5 GB.
MAX_PIXELS = 400_000_000

_MODALITY_WORDS: dict[str, tuple[str, ...]] = {
    "FUNDUS": ("fundus", "retina", "retinal", "eye"),
    "HISTO": ("histo", "ihc", "h&e", "he_", "slide", "tissue", "patholog", "wsi", "stain"),
    "XR": ("xray", "x-ray", "cxr", "radiograph", "chest"),
    "US": ("ultrasound", "sonograph", "echo"),
}


def is_raster_path(path: str) -> bool:
    return path.lower().endswith(RASTER_SUFFIXES)


def read_raster(path: str) -> Scan | ScanProblem:
    """Open a 2D image lazily (header only here), returning a Scan or a problem row."""
    try:
        rows, cols, channels, pages = _probe(path)
    except Exception as exc:  # noqa: BLE001 - codecs raise many types on bad files
        return ScanProblem((path,), "error", f"not a readable image: {exc}", kind="raster")
    if rows * cols > MAX_PIXELS:
        return ScanProblem(
            (path,), "error",
            f"image too large ({cols}x{rows} px > {MAX_PIXELS} px limit)", kind="raster",
        )
    modality, source = _modality_hint(path)
    notes = [f"multi-page image: scored {pages} pages as slices"] if pages > 1 else []
    anatomy = anatomy_from_text(os.path.basename(path))
    return Scan(
        scan_id=make_scan_id((path,)),
        paths=(path,),
        kind="raster",
        shape=(pages, rows, cols),
        spacing=(math.nan, math.nan, math.nan),
        read_slice=RasterSliceReader(path),
        channels=channels,
        modality=modality,
        modality_source=source,
        anatomy=anatomy,
        anatomy_source=SOURCE_FILENAME if anatomy else SOURCE_NONE,
        notes=notes,
        fingerprint=fingerprint_paths((path,)),
    )


def _is_tiff(path: str) -> bool:
    return path.lower().endswith((".tif", ".tiff"))


def _probe(path: str) -> tuple[int, int, int, int]:
    """(rows, cols, channels, pages) without decoding pixels."""
    if _is_tiff(path):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, axes = series.shape, series.axes
        channels = 3 if ("S" in axes and shape[axes.index("S")] >= 3) else 1
        rows, cols = shape[axes.index("Y")], shape[axes.index("X")]
        pages = int(np.prod([s for s, a in zip(shape, axes) if a not in "YXS"], dtype=np.int64))
        return int(rows), int(cols), channels, max(pages, 1)
    from PIL import Image

    with Image.open(path) as image:
        cols, rows = image.size
        mode = image.mode
        pages = getattr(image, "n_frames", 1)
        image.verify()
    channels = 3 if mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LAB", "HSV", "LA") else 1
    if mode == "LA":
        channels = 1
    return int(rows), int(cols), channels, int(pages)


def _modality_hint(path: str) -> tuple[str | None, str]:
    low = os.path.basename(path).lower()
    for modality, words in _MODALITY_WORDS.items():
        if any(word in low for word in words):
            return modality, SOURCE_FILENAME
    return None, SOURCE_NONE


@dataclass(frozen=True)
class RasterSliceReader:
    """Decode page i of a raster image as float32 (rows, cols) or (rows, cols, 3)."""

    path: str

    def __call__(self, index: int) -> np.ndarray:
        if _is_tiff(self.path):
            import tifffile

            with tifffile.TiffFile(self.path) as tif:
                series = tif.series[0]
                data = series.asarray()
                axes = series.axes
            data = _to_yx_or_yxs(data, axes, index)
        else:
            from PIL import Image, ImageSequence

            with Image.open(self.path) as image:
                frame = next(f for i, f in enumerate(ImageSequence.Iterator(image)) if i == index)
                data = _pil_to_array(frame)
        if data.ndim == 3 and data.shape[-1] > 3:
            data = data[..., :3]
        if data.ndim == 3 and data.shape[-1] == 2:
            data = data[..., 0]
        return np.ascontiguousarray(data, dtype=np.float32)


def _pil_to_array(frame) -> np.ndarray:  # noqa: ANN001 - PIL image
    mode = frame.mode
    if mode in ("P", "CMYK", "YCbCr", "LAB", "HSV", "RGBA", "PA"):
        frame = frame.convert("RGB")
    elif mode in ("1", "LA"):
        frame = frame.convert("L")
    return np.asarray(frame)


def _to_yx_or_yxs(data: np.ndarray, axes: str, index: int) -> np.ndarray:
    """Pick page `index` of a TIFF series and return (Y, X) or (Y, X, S)."""
    keep = [a for a in axes if a in "YXS"]
    others = [i for i, a in enumerate(axes) if a not in "YXS"]
    if others:
        other_shape = [data.shape[i] for i in others]
        unravel = np.unravel_index(index, other_shape)
        slicer: list[object] = [slice(None)] * data.ndim
        for axis, value in zip(others, unravel):
            slicer[axis] = int(value)
        data = data[tuple(slicer)]
    order = [keep.index(a) for a in "YXS" if a in keep]
    return np.transpose(data, order)
