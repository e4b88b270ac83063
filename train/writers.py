"""Write a degraded copy of a Scan in the input's own format (DICOM, NIfTI/MGH, raster).

Why: `mediqa-train degrade` lets a site turn its own scans into test cases, and those must open
in the site's viewers and PACS like the originals. So each writer keeps the original's header and
geometry and changes only the pixels (plus, for DICOM, the identity of the new object):

- DICOM: each file's dataset is copied; physical values are mapped back to stored values by
  inverting the rescale (and the reader's MONOCHROME1 inversion), rounded and clipped to the
  stored bit depth; written uncompressed (Explicit VR Little Endian) with new SOP Instance UIDs,
  one new Series Instance UID, and "(degraded KIND s=S)" appended to SeriesDescription. Colour
  (RGB, YBR, palette) is written as RGB. Siemens mosaics are refused (re-tiling is not done).
- NIfTI/MGH: same affine and header, float32 data (no scaling); every volume of 4D data is
  degraded, volumes after the first read straight through nibabel with the reader's orientation.
- Raster: same format and bit depth; JPEG is re-encoded at quality 95 with 4:4:4 chroma, so a
  JPEG copy carries that codec's loss on top of the degradation.

`degrade(image, index)` maps a reader slice (float32, (H, W) or (H, W, 3)) to its degraded twin.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

SliceFn = Callable[[np.ndarray, int], np.ndarray]


class WriterError(Exception):
    """The scan cannot be written back in its format (said in words a user can act on)."""


def write_scan(scan, degrade: SliceFn, targets: list[str], label: str) -> list[str]:  # noqa: ANN001 - mediqa_cli Scan
    """Write the degraded scan; `targets` gives one output path per input path of the scan."""
    for target in targets:
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    if scan.kind == "dicom":
        return write_dicom(scan, degrade, targets, label)
    if scan.kind == "nifti":
        return [write_volume(scan, degrade, targets[0], label)]
    if scan.kind == "raster":
        return [write_raster(scan, degrade, targets[0])]
    raise WriterError(f"no writer for {scan.kind} input")


# --------------------------------------------------------------------------- DICOM


def write_dicom(scan, degrade: SliceFn, targets: list[str], label: str) -> list[str]:  # noqa: ANN001
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    if any("mosaic" in note.lower() for note in scan.notes):
        raise WriterError("Siemens mosaics are not written back (the volume would need re-tiling);"
                          " convert the series to NIfTI first")
    series_uid = generate_uid()
    multiframe = len(scan.paths) == 1 and scan.n_slices > 1
    groups = [(scan.paths[0], list(range(scan.n_slices)))] if multiframe else [
        (path, [i]) for i, path in enumerate(scan.paths)]
    written = []
    for (path, indices), target in zip(groups, targets):
        ds = pydicom.dcmread(path, force=True)
        if "ModalityLUTSequence" in ds:
            raise WriterError(f"{os.path.basename(path)}: a Modality LUT cannot be inverted")
        frames = []
        for index in indices:
            original = scan.read_slice(index)
            values = np.asarray(degrade(original, index), dtype=np.float32)
            frames.append(_stored(ds, values, original, index if multiframe else None))
        colour = frames[0].ndim == 3
        array = np.stack(frames) if multiframe else frames[0]
        photometric = "RGB" if colour else str(ds.PhotometricInterpretation)
        bits = 8 * array.itemsize if colour else int(ds.get("BitsStored", 8 * array.itemsize))
        for keyword in [k for k in ds.dir() if "PaletteColorLookupTable" in k]:
            delattr(ds, keyword)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.set_pixel_data(array, photometric, bits, generate_instance_uid=True)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = series_uid
        ds.SeriesDescription = f"{ds.get('SeriesDescription', '') or ''} ({label})".strip()
        ds.DerivationDescription = label
        if "ImageType" in ds and ds.ImageType:
            image_type = list(ds.ImageType)
            image_type[0] = "DERIVED"
            ds.ImageType = image_type
        ds.save_as(target, enforce_file_format=True)
        written.append(target)
    return written


def _rescale_of(ds, frame: int | None) -> tuple[float, float]:  # noqa: ANN001 - pydicom Dataset
    """(slope, intercept) the reader applied: per-frame groups of enhanced objects, else the
    plain Rescale tags, else identity (mirrors `mediqa_cli.io.dicom._rescale`)."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and frame is not None and frame < len(per_frame):
        items = [per_frame[frame].get("PixelValueTransformationSequence")]
        shared = ds.get("SharedFunctionalGroupsSequence")
        if shared:
            items.append(shared[0].get("PixelValueTransformationSequence"))
        for seq in items:
            if seq:
                return float(seq[0].get("RescaleSlope", 1) or 1), float(
                    seq[0].get("RescaleIntercept", 0) or 0)
        return 1.0, 0.0
    return float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)


def _stored(ds, values: np.ndarray, original: np.ndarray, frame: int | None) -> np.ndarray:  # noqa: ANN001
    """Physical values back to stored integers of the dataset's depth and signedness."""
    if values.ndim == 3:  # colour: RGB at the reader's scale (0..255, or 0..65535 palettes)
        deep = float(np.nanmax(original)) > 255.0
        top, dtype = (65535, np.uint16) if deep else (255, np.uint8)
        return np.clip(np.rint(values), 0, top).astype(dtype)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        # The reader shows MONOCHROME1 as max + min - value; undo it with the original's extremes.
        values = float(np.nanmax(original)) + float(np.nanmin(original)) - values
    slope, intercept = _rescale_of(ds, frame)
    stored = np.rint((values - intercept) / slope)
    allocated = int(ds.get("BitsAllocated", 16))
    bits = int(ds.get("BitsStored", allocated))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    if allocated not in (8, 16):
        raise WriterError(f"{allocated}-bit pixel data is not written back (8 and 16 bits are)")
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    dtype = {(8, False): np.uint8, (8, True): np.int8, (16, False): np.uint16,
             (16, True): np.int16}[(allocated, signed)]
    return np.clip(np.nan_to_num(stored, nan=lo), lo, hi).astype(dtype)


# --------------------------------------------------------------------------- NIfTI / MGH


def write_volume(scan, degrade: SliceFn, target: str, label: str) -> str:  # noqa: ANN001
    import nibabel as nib

    image = nib.load(scan.paths[0])
    data = np.asarray(image.dataobj, dtype=np.float32)
    if data.ndim == 2:
        data = np.ascontiguousarray(np.asarray(degrade(scan.read_slice(0), 0)).T)
    else:
        axis = scan.read_slice.slice_axis
        flat = data.reshape(*data.shape[:3], -1)
        count = 0
        for volume in range(flat.shape[3]):
            for k in range(flat.shape[axis]):
                where: list[object] = [slice(None)] * 3
                where[axis] = k
                where.append(volume)
                # The reader's view of a slice is flipud(plane.T); volume 0 comes from the reader.
                view = (scan.read_slice(k) if volume == 0
                        else np.ascontiguousarray(np.flipud(flat[tuple(where)].T)))
                out = np.asarray(degrade(view, count), dtype=np.float32)
                flat[tuple(where)] = np.flipud(out).T
                count += 1
        data = flat.reshape(data.shape)
    header = image.header.copy()
    new = type(image)(data.astype(np.float32), image.affine, header)
    new.set_data_dtype(np.float32)
    if hasattr(new.header, "set_slope_inter"):
        new.header.set_slope_inter(None, None)
    if "descrip" in new.header:
        new.header["descrip"] = f"{scan.description} ({label})"[-80:].encode("latin-1", "replace")
    nib.save(new, target)
    return target


# --------------------------------------------------------------------------- raster


def write_raster(scan, degrade: SliceFn, target: str) -> str:  # noqa: ANN001
    source = scan.paths[0]
    pages = [np.asarray(degrade(scan.read_slice(i), i), dtype=np.float32)
             for i in range(scan.n_slices)]
    if source.lower().endswith((".tif", ".tiff")):
        import tifffile

        with tifffile.TiffFile(source) as tif:
            dtype = tif.series[0].dtype
        arrays = [_to_dtype(page, np.dtype(dtype)) for page in pages]
        tifffile.imwrite(target, np.stack(arrays) if len(arrays) > 1 else arrays[0])
        return target
    from PIL import Image

    with Image.open(source) as original:
        mode = original.mode
    deep = mode.startswith("I")
    page = pages[0]
    if page.ndim == 3:
        out = Image.fromarray(_to_dtype(page, np.dtype(np.uint8)), "RGB")
    elif deep:
        out = Image.fromarray(_to_dtype(page, np.dtype(np.uint16)))
    else:
        out = Image.fromarray(_to_dtype(page, np.dtype(np.uint8)), "L")
    if target.lower().endswith((".jpg", ".jpeg")):
        out.save(target, quality=95, subsampling=0)
    else:
        out.save(target)
    return target


def _to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind == "f":
        return values.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.rint(values), info.min, info.max).astype(dtype)
