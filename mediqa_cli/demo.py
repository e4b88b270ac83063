"""Build a small demo archive from real images that ship inside installed Python packages.

No download: pydicom's and pydicom-data's test images (CT, MR, CR, US, NM), nibabel's NIfTI
test volumes and scikit-image's fundus and histology photos. A multi-file MR series is written
from a real enhanced-MR volume with shuffled file names, as a PACS export would lay it out.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

# (sub-folder, pydicom test file name): real images only (see ../shared/DATA.md exclusions).
DEMO_DICOM_FILES: tuple[tuple[str, str], ...] = (
    ("ct", "CT_small.dcm"),
    ("ct", "693_J2KR.dcm"),
    ("ct", "explicit_VR-UN.dcm"),
    ("mr", "MR-SIEMENS-DICOM-WithOverlays.dcm"),
    ("mr", "MR_small.dcm"),
    ("xr", "RG1_J2KI.dcm"),
    ("xr", "RG3_J2KI.dcm"),
    ("us", "US1_J2KR.dcm"),
    ("us", "OBXXXX1A_rle.dcm"),
    ("nm", "JPEG-LL.dcm"),
)

DEMO_NIFTI_FILES: tuple[str, ...] = ("example4d.nii.gz", "anatomical.nii")


def build_demo_tree(out_dir: Path) -> list[str]:
    """Write the demo archive under out_dir (replacing it); return notes on what was left out."""
    import pydicom.data

    missing: list[str] = []
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    for folder, name in DEMO_DICOM_FILES:
        source = _testdata(pydicom.data, name)
        if source is None:
            missing.append(f"{name} (install pydicom-data)")
            continue
        target = out_dir / "dicom" / folder
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / name)
    series_source = _testdata(pydicom.data, "emri_small.dcm")
    if series_source is not None:
        write_series_from_multiframe(series_source, out_dir / "dicom" / "mr_series", seed=7)
    else:
        missing.append("emri_small.dcm (install pydicom-data)")
    nib_dir = _nibabel_data_dir()
    for name in DEMO_NIFTI_FILES:
        (out_dir / "nifti").mkdir(exist_ok=True)
        shutil.copy2(nib_dir / name, out_dir / "nifti" / name)
    missing.extend(_copy_photos(out_dir / "photo"))
    return missing


def _testdata(module, name: str) -> str | None:  # noqa: ANN001 - pydicom.data module
    try:
        path = module.get_testdata_file(name)
    except Exception:  # noqa: BLE001 - remote-only files raise offline
        return None
    return str(path) if path else None


def _nibabel_data_dir() -> Path:
    import nibabel

    return Path(nibabel.__file__).parent / "tests" / "data"


def _copy_photos(target: Path) -> list[str]:
    try:
        import skimage
    except ImportError:
        return ["fundus/histology photos (install scikit-image)"]
    data_dir = Path(skimage.__file__).parent / "data"
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for source, name in (("retina.jpg", "fundus_retina.jpg"), ("ihc.png", "histo_ihc.png")):
        if (data_dir / source).exists():
            shutil.copy2(data_dir / source, target / name)
            copied.append(name)
    return [] if len(copied) == 2 else ["some photos missing from scikit-image's data folder"]


def write_series_from_multiframe(source: str, out_dir: Path, seed: int = 0) -> list[Path]:
    """Split a real multi-frame MR into single-slice files, names shuffled, geometry kept."""
    import pydicom

    ds = pydicom.dcmread(source)
    volume = ds.pixel_array
    spacing_rc = (1.0, 1.0)
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        measures = shared[0].get("PixelMeasuresSequence")
        if measures and "PixelSpacing" in measures[0]:
            spacing_rc = tuple(float(v) for v in measures[0].PixelSpacing)  # type: ignore[assignment]
    return write_dicom_series(
        volume,
        out_dir,
        modality=str(ds.get("Modality", "MR")),
        pixel_spacing=spacing_rc,  # type: ignore[arg-type]
        slice_spacing=1.5,
        body_part=str(ds.get("BodyPartExamined", "") or "HEAD"),
        seed=seed,
        uid_seed=f"mediqa-demo-{Path(source).name}-{seed}",
    )


def write_dicom_series(
    volume: np.ndarray,
    out_dir: Path,
    modality: str = "MR",
    pixel_spacing: Sequence[float] = (1.0, 1.0),
    slice_spacing: float = 1.5,
    body_part: str = "",
    seed: int = 0,
    series_uid: str | None = None,
    patient_name: str = "Anonymous^Volunteer",
    patient_id: str = "MQ-0001",
    positions: Sequence[float] | None = None,
    rescale: tuple[float, float] = (1.0, 0.0),
    tags: Mapping[str, object] | None = None,
    uid_seed: str | None = None,
) -> list[Path]:
    """Write (slices, rows, cols) uint16/int16 data as single-slice DICOM files.

    UIDs are random unless `uid_seed` is given: then they derive from it, so the same call
    writes the same study, series and instances (and a report keeps its pseudonyms) every time.

    File names are random (seeded) so that sorting must come from ImagePositionPatient.
    `tags` sets further attributes by keyword (StationName, ProtocolName, ...).
    `positions` overrides the slice heights (to build gaps/duplicates in tests).
    """
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)

    def uid(*parts: object) -> str:
        if uid_seed is None:
            return generate_uid()
        return generate_uid(entropy_srcs=[uid_seed, *map(str, parts)])

    series_uid = series_uid or uid("series")
    study_uid = uid("study")
    frame_uid = uid("frame")
    sop_class = CTImageStorage if modality == "CT" else MRImageStorage
    signed = volume.dtype.kind == "i"
    data = volume.astype(np.int16 if signed else np.uint16)
    if positions is None:
        positions = [i * slice_spacing for i in range(len(data))]
    heights = list(positions)
    names = [f"IM{rng.getrandbits(40):010X}" for _ in range(len(data))]
    written = []
    for index, (pixels, height, name) in enumerate(zip(data, heights, names)):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = uid("instance", index)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = _base_dataset(meta, modality, body_part, patient_name, patient_id)
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.InstanceNumber = index + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, float(height)]
        ds.SliceThickness = slice_spacing
        ds.PixelSpacing = [float(pixel_spacing[0]), float(pixel_spacing[1])]
        ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleSlope, ds.RescaleIntercept = rescale
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
        for keyword, value in (tags or {}).items():
            setattr(ds, keyword, value)
        path = out_dir / name
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    return written


def _base_dataset(meta, modality: str, body_part: str, patient_name: str, patient_id: str):  # noqa: ANN001, ANN202
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.file_meta = meta
    ds.Modality = modality
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.AccessionNumber = "ACC0001"
    ds.StudyDate = "20260101"
    ds.SeriesDescription = f"{body_part} demo series".strip()
    if body_part:
        ds.BodyPartExamined = body_part
    return ds


def default_demo_dir() -> Path:
    return Path(os.environ.get("MEDIQA_DEMO_DIR", "demo_data"))
