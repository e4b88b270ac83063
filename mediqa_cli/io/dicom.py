"""DICOM: detect by content, read headers, group files into series, decode slices lazily.

Grouping follows what a scanner writes: one SeriesInstanceUID per series, split further where
files disagree on geometry (orientation, matrix, pixel spacing, samples per pixel) or are
separate echoes/acquisitions, then sorted along the slice normal. Pixel data is decoded one
slice (or one frame) at a time so a long series never sits in memory.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, pixel_array

from mediqa_cli.io.scan import (
    SOURCE_NONE,
    SOURCE_TAG,
    Scan,
    ScanProblem,
    fingerprint_paths,
    make_scan_id,
)
from mediqa_cli.taxonomy import NON_IMAGE_MODALITIES, anatomy_from_text, modality_from_dicom_code

PHI_KEYWORDS: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "AccessionNumber",
    "StudyDate",
    "InstitutionName",
)

# Identifying values that name patient/study/series/scanner: pseudonymised, never written.
IDENTITY_KEYWORDS: tuple[str, ...] = (
    "StudyInstanceUID", "SeriesInstanceUID", "StationName", "DeviceSerialNumber",
)

# Descriptors retained in reports (DICOM PS3.15 retain-device/descriptor options) -> column.
DESCRIPTOR_KEYWORDS: dict[str, str] = {
    "Manufacturer": "manufacturer",
    "ManufacturerModelName": "manufacturer_model",
    "SoftwareVersions": "software_version",
    "MagneticFieldStrength": "field_strength_t",
    "KVP": "kvp",
    "BodyPartExamined": "body_part",
    "ProtocolName": "protocol_name",
    "SeriesDescription": "series_description",
}
NUMERIC_DESCRIPTORS = frozenset({"field_strength_t", "kvp"})

# Pixel data elements that make a dataset an image.
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)

# A gap this many times the median slice step means slices are missing.
_GAP_FACTOR = 1.6


class DicomReadError(Exception):
    """A DICOM file whose pixels cannot be decoded; the message says why and what to install."""


def looks_like_dicom(path: str) -> bool:
    """True for files with the DICM magic at byte 128 (Part 10), the cheap first test."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def try_read_header(path: str, force: bool) -> Dataset | None:
    """Read a header without pixels; None when the file is not DICOM.

    `force=True` accepts preamble-less (ACR-NEMA style) files, but only if the parse yields
    image-like attributes, so random binaries are not mistaken for DICOM.
    """
    try:
        # Deferring large values reads the header and notes where pixel data lies without
        # loading it, so "has pixels" is known for the price of a header read.
        ds = pydicom.dcmread(path, defer_size=4096, force=force)
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OverflowError):
        return None
    image_like = "SOPClassUID" in ds or "Rows" in ds
    if force and not image_like and not looks_like_dicom(path):
        return None
    return ds


@dataclass
class DicomFileInfo:
    """What grouping and sorting need from one file's header: small, so archives stay cheap."""

    path: str
    series_uid: str
    instance_uid: str
    modality_code: str
    sop_class: str
    rows: int
    cols: int
    samples: int
    frames: int
    orientation: tuple[float, ...] | None
    position: tuple[float, float, float] | None
    pixel_spacing: tuple[float, float] | None
    slice_thickness: float | None
    spacing_between: float | None
    instance: int | None
    acquisition: int | None
    echo: str
    has_pixels: bool
    photometric: str
    transfer_syntax: str
    body_part: str
    description: str
    image_type: str
    phi: dict[str, str] = field(default_factory=dict)
    identity: dict[str, str] = field(default_factory=dict)
    descriptors: dict[str, object] = field(default_factory=dict)


def file_info(path: str, ds: Dataset) -> DicomFileInfo:
    """Extract the grouping-relevant attributes of a header."""
    orientation = _floats(ds.get("ImageOrientationPatient"), 6)
    position = _floats(ds.get("ImagePositionPatient"), 3)
    spacing = _floats(ds.get("PixelSpacing"), 2) or _floats(ds.get("ImagerPixelSpacing"), 2)
    frames_raw = ds.get("NumberOfFrames", 1)
    try:
        frames = max(int(frames_raw or 1), 1)
    except (TypeError, ValueError):
        frames = 1
    # Enhanced multi-frame objects keep geometry in functional groups.
    shared = _first_item(ds.get("SharedFunctionalGroupsSequence"))
    if shared is not None:
        measures = _first_item(shared.get("PixelMeasuresSequence"))
        if measures is not None and spacing is None:
            spacing = _floats(measures.get("PixelSpacing"), 2)
        plane = _first_item(shared.get("PlaneOrientationSequence"))
        if plane is not None and orientation is None:
            orientation = _floats(plane.get("ImageOrientationPatient"), 6)
    text = " ".join(
        str(ds.get(key, "") or "")
        for key in ("SeriesDescription", "StudyDescription", "ProtocolName")
    )
    meta = getattr(ds, "file_meta", None)
    transfer = str(getattr(meta, "TransferSyntaxUID", "") or "") if meta is not None else ""
    return DicomFileInfo(
        path=path,
        series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        instance_uid=str(ds.get("SOPInstanceUID", "") or ""),
        modality_code=str(ds.get("Modality", "") or "").upper(),
        sop_class=str(ds.get("SOPClassUID", "") or ""),
        rows=int(ds.get("Rows", 0) or 0),
        cols=int(ds.get("Columns", 0) or 0),
        samples=int(ds.get("SamplesPerPixel", 1) or 1),
        frames=frames,
        orientation=orientation,
        position=position,
        pixel_spacing=spacing,
        slice_thickness=_float(ds.get("SliceThickness")),
        spacing_between=_float(ds.get("SpacingBetweenSlices")),
        instance=_int(ds.get("InstanceNumber")),
        acquisition=_int(ds.get("AcquisitionNumber")),
        echo=str(ds.get("EchoNumbers", "") or ""),
        has_pixels=any(tag in ds for tag in _PIXEL_TAGS),
        photometric=str(ds.get("PhotometricInterpretation", "") or "").upper(),
        transfer_syntax=transfer,
        body_part=str(ds.get("BodyPartExamined", "") or ""),
        description=text.strip(),
        image_type="\\".join(str(v) for v in (ds.get("ImageType") or [])),
        phi={key: str(ds.get(key, "") or "") for key in PHI_KEYWORDS},
        identity={key: str(ds.get(key, "") or "") for key in IDENTITY_KEYWORDS},
        descriptors=_descriptors(ds),
    )


def _descriptors(ds: Dataset) -> dict[str, object]:
    """Retained descriptor columns of one header (numbers as floats, text as one line)."""
    out: dict[str, object] = {}
    for keyword, column in DESCRIPTOR_KEYWORDS.items():
        value = descriptor_value(column, ds.get(keyword))
        if value is not None:
            out[column] = value
    return out


def descriptor_value(column: str, value: object) -> float | str | None:
    """One descriptor as a report cell: a finite float for the numeric columns, else one line
    of text (multiple values joined by a backslash, DICOM's separator); None when empty.

    Why shared: a BIDS sidecar carries the same descriptors as JSON, and both sources must give
    the same cells so that a scanner's history does not split by file format.
    """
    if value is None or isinstance(value, (bool, dict)):
        return None
    if column in NUMERIC_DESCRIPTORS:
        return _float(value)
    text = one_line(value)
    return text or None


def one_line(value: object) -> str:
    """A header or sidecar value as one line of text; multiple values joined by a backslash
    (DICOM's separator); "" for nothing, a bool or a JSON object (structure, not text)."""
    if value is None or isinstance(value, (bool, dict)):
        return ""
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return "\\".join(one_line(v) for v in value)
    return " ".join(str(value).split())


def group_series(infos: Iterable[DicomFileInfo]) -> Iterator[Scan | ScanProblem]:
    """Group one directory's DICOM files into series Scans (or problem rows)."""
    groups: dict[tuple, list[DicomFileInfo]] = defaultdict(list)
    for info in infos:
        problem = _non_image_problem(info)
        if problem is not None:
            yield problem
            continue
        if info.frames > 1:
            # A multi-frame object is a series of its own (enhanced MR/CT, US cine, NM).
            yield from _multiframe_scan(info)
            continue
        if _is_standalone_image(info):
            yield _build_series([info])
            continue
        groups[_geometry_key(info)].append(info)
    for key in sorted(groups, key=lambda k: tuple(str(x) for x in k)):
        yield from _series_scans(groups[key])


# Modalities whose single-frame images in one series are slices of a volume.
_TOMOGRAPHIC = frozenset({"CT", "MR", "PT", "NM"})


def _is_standalone_image(info: DicomFileInfo) -> bool:
    """A projection image, photo or ultrasound frame without 3D geometry is a scan of its own.

    Several CR/DX views (or US captures) share a series, but they are separate images, not
    slices: stacking them would score a chest PA and a lateral as one "volume".
    """
    has_geometry = info.position is not None and info.orientation is not None
    return not has_geometry and info.modality_code not in _TOMOGRAPHIC


def _non_image_problem(info: DicomFileInfo) -> ScanProblem | None:
    tags: dict[str, Any] = {"phi": dict(info.phi), "identity": dict(info.identity)}
    if info.modality_code in NON_IMAGE_MODALITIES:
        return ScanProblem(
            (info.path,), "skipped", f"non-image DICOM object (Modality {info.modality_code})",
            kind="dicom", **tags,
        )
    if (info.rows == 0 or info.cols == 0) and _is_image_sop_class(info.sop_class):
        return ScanProblem(
            (info.path,), "error",
            f"truncated or incomplete DICOM header: {_sop_class_name(info.sop_class)} is an "
            "image, but Rows/Columns are missing",
            kind="dicom", **tags,
        )
    if info.rows == 0 or info.cols == 0:
        return ScanProblem(
            (info.path,), "skipped", "DICOM object without image attributes (no Rows/Columns)",
            kind="dicom", **tags,
        )
    if not info.has_pixels:
        return ScanProblem((info.path,), "error", "DICOM image without pixel data", kind="dicom",
                           **tags)
    return None


def _sop_class_name(uid: str) -> str:
    return pydicom.uid.UID(uid).name if uid else "unknown SOP class"


def _is_image_sop_class(uid: str) -> bool:
    """SOP classes whose instances are images ("... Image Storage"), by pydicom's UID names."""
    return bool(uid) and "Image Storage" in _sop_class_name(uid)


def _geometry_key(info: DicomFileInfo) -> tuple:
    """Files that share this key belong to one stack."""
    orient = tuple(round(v, 3) for v in info.orientation) if info.orientation else None
    spacing = tuple(round(v, 4) for v in info.pixel_spacing) if info.pixel_spacing else None
    mosaic = "MOSAIC" in info.image_type.upper()
    return (
        info.series_uid or f"no-uid:{os.path.dirname(info.path)}",
        info.rows,
        info.cols,
        info.samples,
        orient,
        spacing,
        info.echo,
        mosaic,
    )


def _series_scans(files: list[DicomFileInfo]) -> Iterator[Scan | ScanProblem]:
    """Split by acquisition where positions repeat across acquisitions, then build scans."""
    files, duplicates = _drop_duplicate_instances(files)
    if "MOSAIC" in files[0].image_type.upper():
        yield from _mosaic_scans(files)
        return
    by_acq: dict[int | None, list[DicomFileInfo]] = defaultdict(list)
    for info in files:
        by_acq[info.acquisition].append(info)
    if len(by_acq) > 1 and _positions_repeat(files):
        for acq in sorted(by_acq, key=lambda a: -1 if a is None else a):
            note = f"acquisition {acq} of a multi-acquisition series"
            yield _build_series(by_acq[acq], note=note, duplicates=duplicates)
    else:
        yield _build_series(files, duplicates=duplicates)


def _drop_duplicate_instances(files: list[DicomFileInfo]) -> tuple[list[DicomFileInfo], int]:
    """Copies of one SOP instance (same SOPInstanceUID) count once: keep the first path."""
    seen: set[str] = set()
    kept = []
    for info in sorted(files, key=lambda f: f.path):
        if info.instance_uid and info.instance_uid in seen:
            continue
        seen.add(info.instance_uid)
        kept.append(info)
    return kept, len(files) - len(kept)


def _positions_repeat(files: list[DicomFileInfo]) -> bool:
    seen = {tuple(round(c, 2) for c in f.position) for f in files if f.position is not None}
    return len(seen) < sum(1 for f in files if f.position is not None)


def _slice_normal(info: DicomFileInfo) -> np.ndarray | None:
    if not info.orientation:
        return None
    row, col = np.asarray(info.orientation[:3]), np.asarray(info.orientation[3:])
    normal = np.cross(row, col)
    norm = float(np.linalg.norm(normal))
    return normal / norm if norm > 1e-6 else None


def _build_series(
    files: list[DicomFileInfo], note: str = "", duplicates: int = 0
) -> Scan | ScanProblem:
    """Sort a stack along its normal, check its geometry and make the Scan."""
    first = files[0]
    paths = tuple(f.path for f in files)
    scan_id = make_scan_id(paths, first.series_uid)
    normal = _slice_normal(first)
    notes = [note] if note else []
    if duplicates:
        notes.append(f"{duplicates} duplicate file(s) of the same SOP instance ignored")
    slice_step = math.nan
    if normal is not None and all(f.position is not None for f in files):
        heights = [float(np.dot(normal, f.position)) for f in files]  # type: ignore[arg-type]
        order = sorted(range(len(files)), key=lambda i: (heights[i], files[i].instance or 0))
        files = [files[i] for i in order]
        heights = [heights[i] for i in order]
        if len(files) > 1:
            problem = _check_positions(heights)
            if problem:
                return ScanProblem(paths, "error", problem, kind="dicom", scan_id=scan_id)
            slice_step = float(np.median(np.diff(heights)))
    else:
        files = sorted(files, key=lambda f: (f.instance is None, f.instance or 0, f.path))
        if len(files) > 1:
            notes.append("no slice positions: sorted by InstanceNumber")
    if math.isnan(slice_step):
        slice_step = first.spacing_between or first.slice_thickness or math.nan
    row_mm, col_mm = first.pixel_spacing or (math.nan, math.nan)
    reader = DicomSliceReader(tuple(f.path for f in files), frames_per_file=1)
    return _make_scan(first, reader, len(files), (slice_step, row_mm, col_mm), scan_id, notes)


def _check_positions(heights: list[float]) -> str:
    """Describe duplicated positions or missing slices; empty when the stack is regular."""
    steps = np.diff(np.asarray(heights))
    duplicates = int(np.sum(np.abs(steps) < 1e-3))
    problems = []
    if duplicates:
        problems.append(f"{duplicates} duplicated slice position(s)")
    positive = steps[np.abs(steps) >= 1e-3]
    if positive.size:
        median = float(np.median(positive))
        gaps = np.nonzero(positive > _GAP_FACTOR * median)[0]
        if gaps.size:
            problems.append(
                f"{gaps.size} gap(s) in slice positions (largest {positive.max():.2f} mm vs "
                f"{median:.2f} mm step): missing slice(s)"
            )
    if problems:
        return "inconsistent series geometry: " + "; ".join(problems)
    return ""


def _multiframe_scan(info: DicomFileInfo) -> Iterator[Scan | ScanProblem]:
    """One multi-frame object as a stack of frames (cine or enhanced volume)."""
    scan_id = make_scan_id((info.path,), info.series_uid)
    slice_step = info.spacing_between or info.slice_thickness or math.nan
    row_mm, col_mm = info.pixel_spacing or (math.nan, math.nan)
    notes = []
    if info.modality_code == "US":
        notes.append(f"cine of {info.frames} frames")
    reader = DicomSliceReader((info.path,), frames_per_file=info.frames)
    yield _make_scan(info, reader, info.frames, (slice_step, row_mm, col_mm), scan_id, notes)


def _mosaic_scans(files: list[DicomFileInfo]) -> Iterator[Scan | ScanProblem]:
    """Siemens mosaics: each file is a whole volume; score the first, as for 4D NIfTI."""
    files = sorted(files, key=lambda f: (f.acquisition or 0, f.instance or 0, f.path))
    first = files[0]
    try:
        from nibabel.nicom import dicomwrappers

        wrapper = dicomwrappers.wrapper_from_file(first.path)
        volume_shape = wrapper.image_shape
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types on odd CSA headers
        yield ScanProblem(
            tuple(f.path for f in files), "error", f"Siemens mosaic could not be unpacked: {exc}",
            kind="dicom",
        )
        return
    n_slices = int(volume_shape[2]) if len(volume_shape) > 2 else 1
    notes = ["Siemens mosaic"]
    if len(files) > 1:
        notes.append(f"{len(files)} volumes in series; scored the first")
    row_mm, col_mm = first.pixel_spacing or (math.nan, math.nan)
    step = first.spacing_between or first.slice_thickness or math.nan
    reader = MosaicSliceReader(first.path)
    scan_id = make_scan_id(tuple(f.path for f in files), first.series_uid)
    scan = _make_scan(first, reader, n_slices, (step, row_mm, col_mm), scan_id, notes)
    if isinstance(scan, Scan):
        scan.shape = (n_slices, int(volume_shape[0]), int(volume_shape[1]))
        scan.paths = tuple(f.path for f in files)
        scan.fingerprint = fingerprint_paths(scan.paths)
    yield scan


def _make_scan(
    info: DicomFileInfo,
    reader: DicomSliceReader | MosaicSliceReader,
    n_slices: int,
    spacing: tuple[float, float, float],
    scan_id: str,
    notes: list[str],
) -> Scan:
    modality = modality_from_dicom_code(info.modality_code)
    anatomy = anatomy_from_text(info.body_part) or anatomy_from_text(info.description)
    if info.modality_code and modality is None:
        notes.append(f"unmapped DICOM modality {info.modality_code}")
    channels = 3 if (info.samples == 3 or info.photometric == "PALETTE COLOR") else 1
    return Scan(
        scan_id=scan_id,
        paths=reader.paths,
        kind="dicom",
        shape=(n_slices, info.rows, info.cols),
        spacing=spacing,
        read_slice=reader,
        channels=channels,
        modality=modality,
        modality_source=SOURCE_TAG if modality else SOURCE_NONE,
        anatomy=anatomy,
        anatomy_source=SOURCE_TAG if anatomy else SOURCE_NONE,
        description=info.description,
        notes=notes,
        phi=dict(info.phi),
        identity=dict(info.identity),
        descriptors=dict(info.descriptors),
        fingerprint=fingerprint_paths(reader.paths),
    )


@dataclass(frozen=True)
class DicomSliceReader:
    """Decode slice i of a stack: file i (single-frame files) or frame i of one file.

    A plain picklable object, so worker processes can read slices themselves.
    """

    paths: tuple[str, ...]
    frames_per_file: int = 1

    def __call__(self, index: int) -> np.ndarray:
        if self.frames_per_file > 1:
            path, frame = self.paths[0], index
        else:
            path, frame = self.paths[index], None
        return decode_dicom_slice(path, frame)


@dataclass(frozen=True)
class MosaicSliceReader:
    """Slice i of the volume packed in a Siemens mosaic (unpacked by nibabel)."""

    path: str

    @property
    def paths(self) -> tuple[str, ...]:
        return (self.path,)

    def __call__(self, index: int) -> np.ndarray:
        key = (self.path, os.stat(self.path).st_mtime_ns)
        if key not in _mosaic_cache:
            import warnings

            from nibabel.nicom import dicomwrappers

            _mosaic_cache.clear()  # one mosaic volume at a time: it is one file's worth
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # nibabel's "experimental readers" notice
                _mosaic_cache[key] = dicomwrappers.wrapper_from_file(self.path).get_data()
        return np.ascontiguousarray(_mosaic_cache[key][:, :, index], dtype=np.float32)


# Unpacking a mosaic decodes the whole file; keep the last one for the rest of its slices.
_mosaic_cache: dict[tuple[str, int], np.ndarray] = {}


def decode_dicom_slice(path: str, frame: int | None = None) -> np.ndarray:
    """Pixels of one slice in physical units (modality LUT applied, MONOCHROME1 inverted).

    Colour (RGB, YBR, palette) comes back as RGB (rows, cols, 3). Decoding failures name the
    transfer syntax and the plugin to install.
    """
    try:
        # For one frame of a multi-frame object the header is enough here: pixel_array(path,
        # index=frame) below reads just that frame, instead of every frame of the cine per call.
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=frame is not None)
    except Exception as exc:  # noqa: BLE001 - surface any parse failure as a read error
        raise DicomReadError(f"cannot parse DICOM: {exc}") from exc
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        pixels = ds.pixel_array if frame is None else pixel_array(path, index=frame)
    except Exception as exc:  # noqa: BLE001 - decoders raise many types
        raise DicomReadError(_decode_message(syntax, exc)) from exc
    if frame is None and int(ds.get("NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[0]
    photometric = str(ds.get("PhotometricInterpretation", "") or "").upper()
    if photometric == "PALETTE COLOR":
        return apply_color_lut(pixels, ds).astype(np.float32)
    if pixels.ndim == 3 and pixels.shape[-1] == 3:
        return pixels.astype(np.float32)
    values = _rescale(ds, pixels, frame)
    if photometric == "MONOCHROME1":
        values = _monochrome1_pivot(ds, frame, values) - values
    return values


def _monochrome1_pivot(ds: Dataset, frame: int | None, values: np.ndarray) -> float:
    """lo + hi of the stored value range (BitsStored, PixelRepresentation) after rescale.

    Inverting around the stored range maps one stored value to one output value in every slice
    of a series; a slice's own min + max would shift each slice by a different offset. Without
    BitsStored (or when the rescale of the range is not finite) the slice's range is the best
    there is.
    """
    bits = ds.get("BitsStored")
    if isinstance(bits, int) and 1 <= bits <= 32:
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
        lo, hi = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1))
        ends = _rescale(ds, np.array([lo, hi], dtype=np.int64), frame)
        if ends.shape == (2,) and np.isfinite(ends).all():
            return float(ends[0] + ends[1])
    finite = values[np.isfinite(values)]
    return float(finite.max() + finite.min()) if finite.size else 0.0


def _rescale(ds: Dataset, pixels: np.ndarray, frame: int | None) -> np.ndarray:
    """Modality LUT / rescale, including per-frame values of enhanced objects."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and frame is not None and frame < len(per_frame):
        transform = _first_item(per_frame[frame].get("PixelValueTransformationSequence"))
        if transform is None:
            shared = _first_item(ds.get("SharedFunctionalGroupsSequence"))
            if shared is not None:
                transform = _first_item(shared.get("PixelValueTransformationSequence"))
        if transform is not None:
            slope = _float(transform.get("RescaleSlope")) or 1.0
            intercept = _float(transform.get("RescaleIntercept")) or 0.0
            return (pixels.astype(np.float32) * slope + intercept).astype(np.float32)
        return pixels.astype(np.float32)
    try:
        return np.asarray(apply_modality_lut(pixels, ds), dtype=np.float32)
    except Exception:  # noqa: BLE001 - a broken LUT should not hide the raw pixels
        return pixels.astype(np.float32)


def _decode_message(syntax: object, exc: Exception) -> str:
    """Name the transfer syntax, the decoder's complaint and, if one is missing, what to install."""
    name = getattr(syntax, "name", None) or str(syntax or "unknown")
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " ".join(lines[:3]) if lines else type(exc).__name__
    missing = _missing_decoders()
    hint = ""
    if missing and getattr(syntax, "is_compressed", False):
        hint = f" (decoder plugins not installed: pip install {' '.join(missing)})"
    return f"cannot decode pixel data (transfer syntax {name} [{syntax}]): {text}{hint}"


def _missing_decoders() -> list[str]:
    import importlib.util

    plugins = {
        "pylibjpeg": "pylibjpeg",
        "libjpeg": "pylibjpeg-libjpeg",
        "openjpeg": "pylibjpeg-openjpeg",
        "rle": "pylibjpeg-rle",
    }
    return [pkg for module, pkg in plugins.items() if importlib.util.find_spec(module) is None]


def _first_item(seq: object) -> Dataset | None:
    try:
        return seq[0] if seq else None  # type: ignore[index]
    except (IndexError, TypeError):
        return None


def _floats(value: object, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    if len(out) != n or not all(math.isfinite(v) for v in out):
        return None
    return out


def _float(value: object) -> float | None:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
