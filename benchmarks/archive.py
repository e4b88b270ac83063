"""A synthetic-but-real archive for the end-to-end benchmark, written once from packaged images.

Why: the demo archive has 15 scans, too few to see per-file costs or to fit cost against the
number of files. This writes any number of scans, mixed like a PACS export plus a research
share: per 10 scans, 4 single-slice-file DICOM series (8-16 slices of the MNI T1 template or
nibabel's EPI, MR or CT, each its own patient), 2 NIfTI volumes (.nii and .nii.gz slabs) and
4 2D images (fundus and histology crops from scikit-image, grey radiograph-like PNGs). Each
scan differs (slab, crop, seeded noise), so nothing is scored twice from a cache. Scans go into
parts of PART_SCANS scans, so an archive of n scans is the first n / PART_SCANS parts.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import numpy as np

PART_SCANS = 10


@functools.lru_cache(maxsize=1)
def source_volume() -> tuple[np.ndarray, str]:
    """(slices, rows, cols) float32 head volume: nilearn's MNI T1 template, or nibabel's EPI.
    Loaded once per process (callers copy before changing it): `end_to_end.py` writes the same
    volume as ten series."""
    try:
        from nilearn.datasets import load_mni152_template

        volume = np.asarray(load_mni152_template(resolution=1).dataobj, dtype=np.float32)
        name = "MNI152 T1 template (nilearn)"
    except Exception:  # noqa: BLE001 - nilearn missing: fall back to nibabel's EPI
        import nibabel as nib

        path = Path(nib.__file__).parent / "tests" / "data" / "example4d.nii.gz"
        volume = np.asarray(nib.load(path).dataobj, dtype=np.float32)[..., 0]
        name = "example4d EPI (nibabel)"
    stack = np.moveaxis(volume, 2, 0)
    return stack / max(float(stack.max()), 1e-6), name


def _photos() -> dict[str, np.ndarray]:
    import skimage
    from PIL import Image

    data = Path(skimage.__file__).parent / "data"
    return {
        "fundus": np.asarray(Image.open(data / "retina.jpg").convert("RGB")),
        "histo": np.asarray(Image.open(data / "ihc.png").convert("RGB")),
        "xray": np.asarray(Image.open(data / "camera.png").convert("L")),
        "chest": np.asarray(Image.open(data / "moon.png").convert("L")),
    }


def build_archive(root: Path, n_scans: int, seed: int = 0) -> dict[str, int]:
    """Write n_scans scans under root/partNN/; return counts by kind and of files."""
    import nibabel as nib
    from PIL import Image

    from mediqa_cli.demo import write_dicom_series

    if root.exists():
        shutil.rmtree(root)
    volume, _ = source_volume()
    photos = _photos()
    rng = np.random.default_rng(seed)
    counts = {"dicom_series": 0, "nifti": 0, "2d": 0, "files": 0}
    for index in range(n_scans):
        folder = root / f"part{index // PART_SCANS:02d}"
        kind = index % 10
        noise = float(rng.uniform(0.0, 0.04))
        if kind < 4:
            n = int(rng.integers(8, 17))
            start = int(rng.integers(40, volume.shape[0] - n - 30))
            slab = volume[start:start + n]
            slab = slab + rng.normal(0.0, noise, slab.shape).astype(np.float32)
            ct = kind == 3
            data = (slab * 1400 - 1000 if ct else slab * 4000).astype(np.int16)
            # One patient per series, as in a night's PACS export: the privacy gate learns
            # every patient's name, ID and UIDs, and a gate whose cost grows with them shows.
            write_dicom_series(data, folder / f"s{index:05d}", modality="CT" if ct else "MR",
                               body_part="HEAD", seed=index, patient_id=f"MQ-{index:05d}",
                               patient_name=f"Volunteer^{index:05d}")
            counts["dicom_series"] += 1
            counts["files"] += n
        elif kind < 6:
            n = int(rng.integers(24, 49))
            start = int(rng.integers(20, volume.shape[0] - n - 10))
            slab = volume[start:start + n]
            slab = slab + rng.normal(0.0, noise, slab.shape).astype(np.float32)
            data = np.moveaxis((slab * 3000).astype(np.int16), 0, 2)
            suffix = ".nii.gz" if kind == 5 else ".nii"
            folder.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(data, np.eye(4)), folder / f"sub-{index:05d}_T1w{suffix}")
            counts["nifti"] += 1
            counts["files"] += 1
        else:
            name = ("fundus", "histo", "xray", "chest")[kind - 6]
            photo = photos[name]
            side = int(rng.integers(256, 513))
            side = min(side, photo.shape[0], photo.shape[1])
            r0 = int(rng.integers(0, photo.shape[0] - side + 1))
            c0 = int(rng.integers(0, photo.shape[1] - side + 1))
            crop = photo[r0:r0 + side, c0:c0 + side].astype(np.float32)
            crop = np.clip(crop + rng.normal(0.0, noise * 255, crop.shape), 0, 255)
            folder.mkdir(parents=True, exist_ok=True)
            suffix = ".jpg" if name == "fundus" else ".png"
            Image.fromarray(crop.astype(np.uint8)).save(folder / f"{name}_{index:05d}{suffix}")
            counts["2d"] += 1
            counts["files"] += 1
    return counts


def parts(root: Path, n_scans: int) -> list[str]:
    """The part folders that hold the first n_scans scans (a multiple of PART_SCANS)."""
    return [str(root / f"part{i:02d}") for i in range(max(1, n_scans // PART_SCANS))]
