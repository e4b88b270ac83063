"""NIfTI (.nii, .nii.gz) and FreeSurfer MGH/MGZ volumes through nibabel's lazy proxies.

Slices are read one at a time from the array proxy, so a huge volume is never loaded whole.
The slice axis is the one closest to the patient's superior-inferior axis (axial slices);
4D data is scored on its first volume, with a note (one row per scan keeps reports stable).
A BIDS JSON sidecar beside the file (`mediqa_cli.io.bids`) gives the modality, scanner and
protocol; without one, the modality is guessed from header text and then the file name.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

import nibabel as nib
import numpy as np

from mediqa_cli.io.bids import read_sidecar
from mediqa_cli.io.scan import (
    SOURCE_FILENAME,
    SOURCE_HEADER,
    SOURCE_NONE,
    SOURCE_SIDECAR,
    Scan,
    ScanProblem,
    fingerprint_paths,
    make_scan_id,
)
from mediqa_cli.taxonomy import anatomy_from_text

VOLUME_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz", ".mgh", ".mgz")

# Whole words in file names or header descriptions that reveal an MR or CT acquisition
# (never substrings: "patient12_ct" holds "t1", "acquisition" holds "ct").
_MR_WORDS = frozenset({"t1", "t2", "t1w", "t2w", "t2star", "epi", "mni", "pd", "pdw", "swi",
                       "mr", "mri"})
# Longer MR words also count as the start of a word ("anatomical", "functional", "flair3d").
_MR_PREFIXES = ("anat", "func", "flair", "mprage", "bold", "dwi", "dti")
_CT_WORDS = frozenset({"ct", "hu", "cect", "ncct"})


def is_volume_path(path: str) -> bool:
    return path.lower().endswith(VOLUME_SUFFIXES)


def read_volume(path: str) -> Scan | ScanProblem:
    """Open a volume lazily; return a Scan or a problem row explaining the failure."""
    try:
        image = nib.load(path)
        shape = tuple(int(s) for s in image.shape)
        zooms = tuple(float(z) for z in image.header.get_zooms())
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types on bad files
        message = f"not a readable NIfTI/MGH volume: {exc}"
        return ScanProblem((path,), "error", message, kind="nifti")
    notes: list[str] = []
    if len(shape) < 2 or any(s == 0 for s in shape):
        return ScanProblem((path,), "error", f"unusable volume shape {shape}", kind="nifti")
    extra = shape[3:]
    volumes = int(np.prod(extra)) if extra else 1
    if volumes > 1:
        notes.append(f"{len(shape)}D data {shape}: scored the first volume of {volumes}")
    spatial = shape[:3] if len(shape) >= 3 else (*shape, 1)
    slice_axis = _slice_axis(image.affine, spatial)
    in_plane = [a for a in range(3) if a != slice_axis]
    spacing_xyz = (*zooms[:3], *([1.0] * (3 - len(zooms[:3]))))
    # Slices are shown transposed (rows run along the second in-plane voxel axis).
    spacing = (
        float(spacing_xyz[slice_axis]),
        float(spacing_xyz[in_plane[1]]),
        float(spacing_xyz[in_plane[0]]),
    )
    spacing = tuple(s if s > 0 and math.isfinite(s) else math.nan for s in spacing)  # type: ignore[assignment]
    header_text = _header_description(image)
    sidecar = read_sidecar(path)
    if sidecar.note:
        notes.append(sidecar.note)
    description = " ".join(filter(None, (sidecar.description, header_text)))
    modality, modality_source = sidecar.modality, SOURCE_SIDECAR
    if modality is None:
        modality, modality_source = _modality_hint(path, header_text)
    anatomy, anatomy_source = None, SOURCE_NONE
    for text, source in ((sidecar.description, SOURCE_SIDECAR), (header_text, SOURCE_HEADER),
                         (os.path.basename(path), SOURCE_FILENAME)):
        anatomy = anatomy_from_text(text)
        if anatomy is not None:
            anatomy_source = source
            break
    reader = VolumeSliceReader(path, slice_axis, len(shape))
    return Scan(
        scan_id=make_scan_id((path,)),
        paths=(path,),
        kind="nifti",
        shape=(spatial[slice_axis], spatial[in_plane[1]], spatial[in_plane[0]]),
        spacing=spacing,  # type: ignore[arg-type]
        read_slice=reader,
        modality=modality,
        modality_source=modality_source,
        anatomy=anatomy,
        anatomy_source=anatomy_source,
        description=description,
        notes=notes,
        fingerprint=fingerprint_paths((path, sidecar.path) if sidecar.path else (path,)),
        phi=sidecar.phi,
        identity=sidecar.identity,
        descriptors=sidecar.descriptors,
    )


def _slice_axis(affine: np.ndarray, spatial: tuple[int, ...]) -> int:
    """Voxel axis most aligned with superior-inferior; the thinnest axis if the affine is odd."""
    try:
        codes = nib.aff2axcodes(affine)
        for axis, code in enumerate(codes):
            if code in ("S", "I") and spatial[axis] > 1:
                return axis
    except Exception:  # noqa: BLE001 - a degenerate affine falls back to shape
        pass
    return int(np.argmin(spatial))


def _header_description(image: nib.spatialimages.SpatialImage) -> str:
    try:
        raw = image.header.get("descrip")
        if raw is None:
            return ""
        text = raw.item() if hasattr(raw, "item") else raw
        if isinstance(text, bytes):
            text = text.decode("latin-1", "replace")
        return str(text).strip("\x00 ").strip()
    except Exception:  # noqa: BLE001 - description is a hint only
        return ""


def _modality_hint(path: str, description: str) -> tuple[str | None, str]:
    """NIfTI has no modality field: guess MR/CT from header text, then the file name."""
    for text, source in ((description, SOURCE_HEADER), (os.path.basename(path), SOURCE_FILENAME)):
        tokens = set(re.split(r"[^a-z0-9]+", text.lower()))
        if tokens & _CT_WORDS:
            return "CT", source
        if tokens & _MR_WORDS or any(t.startswith(_MR_PREFIXES) for t in tokens):
            return "MR", source
    return None, SOURCE_NONE


# A volume is opened once for all of its scan's slices (the first pass reads every slice, then
# the selected ones again), not once per slice. Volumes up to these sizes (decoded) are read whole
# once and kept: gzip cannot seek, so slice reads would re-decompress from the start every time,
# and one sequential read of a small uncompressed file beats a read per slice along any axis.
# Larger ones are read slice by slice through nibabel's array proxy.
GZ_CACHE_BYTES = 768 * 1024 * 1024
RAW_CACHE_BYTES = 64 * 1024 * 1024
_open_volume: dict[tuple[str, int], object] = {}


@dataclass(frozen=True)
class VolumeSliceReader:
    """Reads one 2D slice from the scan's volume, opened once (see `_open_volume`): through
    nibabel's array proxy, or from a once-decoded copy of a volume of bounded size."""

    path: str
    slice_axis: int
    ndim: int

    def _source(self) -> object:
        key = (self.path, os.stat(self.path).st_mtime_ns)
        source = _open_volume.get(key)
        if source is not None:
            return source
        _open_volume.clear()  # one volume at a time keeps memory bounded
        # mmap=False: nibabel then reads just the slice's bytes; a memory map would leave every
        # touched page of a long volume counted in the process's resident memory.
        image = nib.load(self.path, mmap=False)
        source = image.dataobj
        nbytes = int(np.prod(image.shape)) * np.dtype(image.get_data_dtype()).itemsize
        compressed = self.path.lower().endswith((".gz", ".mgz"))
        if nbytes <= (GZ_CACHE_BYTES if compressed else RAW_CACHE_BYTES):
            source = np.asarray(image.dataobj)
        _open_volume[key] = source
        return source

    def __call__(self, index: int) -> np.ndarray:
        proxy = self._source()
        slicer: list[object] = [slice(None)] * 3
        if self.ndim == 2:
            data = np.asarray(proxy[:, :], dtype=np.float32)
            return data.T.copy()
        slicer[self.slice_axis] = index
        slicer.extend([0] * (self.ndim - 3))
        data = np.asarray(proxy[tuple(slicer)], dtype=np.float32)
        # Transpose so rows run along the second in-plane voxel axis (the usual radiological view).
        return np.ascontiguousarray(np.flipud(data.T))
