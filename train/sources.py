"""The catalogue of real images that ship inside PyPI packages (see ../shared/DATA.md).

Each entry names one distinct real image (or volume) once, in one encoding, with the modality and
anatomy we know it to be: package test data carries few reliable tags (NIfTI has no modality
field; the MR shoulder's "T1W" text reads as a head to keyword matching), so the catalogue, not
the reader's hint, is the label. Entries are located on disk and handed to the product's readers
(`mediqa_cli.io.discover`); only data that is no image file format (a `.npy` array) is loaded
directly. `EXCLUDED` lists what DATA.md says is not a real image, and duplicates, with reasons,
so the summary can show what was left out and why.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import shutil
import tarfile
from dataclasses import dataclass

# Layouts: a single 2D image; a spatial volume (reformatted into other orientations when it is
# near-isotropic); a cine loop (frames in time: subsampled, never reformatted).
IMAGE, VOLUME, CINE = "image", "volume", "cine"
LAYOUTS = (IMAGE, VOLUME, CINE)
LOCAL = "file"  # Source.where[0] of a site's own image, listed by `read_image_list`


@dataclass(frozen=True)
class Source:
    """One distinct real image in an installed package, or on disk.

    `where` is how to find it: ("pydicom", file name) through `pydicom.data.get_testdata_file`,
    (import package, path inside the package folder), or (LOCAL, absolute path). `group` ties
    sources from one patient or acquisition together so they always land in the same split.
    """

    id: str
    where: tuple[str, str]
    modality: str
    anatomy: str
    layout: str = IMAGE
    group: str = ""
    note: str = ""

    @property
    def package(self) -> str:
        return "pydicom" if self.where[0] == "pydicom" else self.where[0]

    @property
    def split_group(self) -> str:
        return self.group or self.id


def _p(name: str, modality: str, anatomy: str, layout: str = IMAGE, note: str = "") -> Source:
    """A pydicom / pydicom-data test file (found by `get_testdata_file`)."""
    return Source(f"pydicom:{name.removesuffix('.dcm')}", ("pydicom", name), modality, anatomy,
                  layout, note=note)


def _k(package: str, path: str, sid: str, modality: str, anatomy: str, layout: str = IMAGE,
       group: str = "", note: str = "") -> Source:
    """A file or folder inside an installed package."""
    return Source(f"{package}:{sid}", (package, path), modality, anatomy, layout, group, note)


SOURCES: tuple[Source, ...] = (
    # --- pydicom test files and pydicom-data (data_store) ---
    _p("CT_small.dcm", "CT", "abdomen", note="128^2 crop at the lumbar spine"),
    _p("693_UNCR.dcm", "CT", "head"),
    _p("J2K_pixelrep_mismatch.dcm", "CT", "head"),
    _p("bad_sequence.dcm", "CT", "neck", note="real CT despite the name; its tags are odd"),
    _p("explicit_VR-UN.dcm", "CT", "abdomen"),
    _p("MR_small.dcm", "MR", "other"),
    _p("MR2_UNCR.dcm", "MR", "upper_limb", note="shoulder T1 SE 1024^2"),
    _p("examples_overlay.dcm", "MR", "abdomen"),
    _p("emri_small.dcm", "MR", "head", VOLUME, note="enhanced MR, 10 frames"),
    _p("RG1_UNCR.dcm", "XR", "chest", note="CR, MONOCHROME1 (inverted by the reader)"),
    _p("RG3_UNCR.dcm", "XR", "lower_limb"),
    _p("US1_UNCR.dcm", "US", "other"),
    _p("color3d_jpeg_baseline.dcm", "US", "other", CINE, note="120-frame colour cine"),
    _p("examples_palette.dcm", "US", "other"),
    _p("OBXXXX1A.dcm", "US", "abdomen"),
    _p("gdcm-US-ALOKA-16.dcm", "US", "other"),
    _p("JPGLosslessP14SV1_1s_1f_8b.dcm", "US", "other"),
    _p("color-pl.dcm", "US", "chest", note="transesophageal echocardiogram"),
    _p("JPEG-LL.dcm", "NM", "whole_body", note="whole-body bone scan"),
    # --- heudiconv: Siemens MR (mosaics unpacked by nibabel inside the product reader) ---
    _k("heudiconv", "tests/data/b0dwiForFmap", "b0dwi", "MR", "head", VOLUME,
       note="DWI mosaic, first of 3 volumes (as the reader scores it)"),
    _k("heudiconv", "tests/data/axasc35.dcm", "axasc35", "MR", "head", VOLUME, note="EPI mosaic"),
    _k("heudiconv", "tests/data/MRI_102TD_PHA_S.MR.Chen_Matthews_1.3.1.2022.11.16.15.50.20.357."
       "31204541.dcm", "mpr_cor", "MR", "other", VOLUME, note="coronal MPR of a phantom"),
    # --- fslpy: Philips MR shoulder, two series of one examination (one split group) ---
    _k("fsl", "tests/testdata/example_dicom.tbz2", "example_dicom", "MR", "upper_limb", VOLUME),
    # --- nibabel, nilearn, dipy volumes ---
    _k("nibabel", "tests/data/example4d.nii.gz", "example4d", "MR", "head", VOLUME,
       note="EPI, first volume"),
    _k("nibabel", "tests/data/anatomical.nii", "anatomical", "MR", "head", VOLUME),
    _k("nilearn", "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz", "mni152_t1",
       "MR", "head", VOLUME, note="population-average template: smooth, high SNR"),
    _k("dipy", "data/files/S0_10slices.nii.gz", "S0_10slices", "MR", "head", VOLUME),
    _k("dipy", "data/files/aniso_vox.nii.gz", "aniso_vox", "MR", "head", VOLUME),
    _k("dipy", "data/files/test_piesno.nii.gz", "test_piesno", "MR", "head", VOLUME),
    _k("dipy", "data/files/t1_coronal_slice.npy", "t1_coronal_slice", "MR", "head",
       note="a .npy array (no image format): loaded with numpy, spacing unknown"),
    # --- photographs ---
    _k("skimage", "data/retina.jpg", "retina", "FUNDUS", "eye"),
    _k("skimage", "data/microaneurysms.png", "microaneurysms", "FUNDUS", "eye"),
    _k("skimage", "data/ihc.png", "ihc", "HISTO", "tissue"),
    _k("tiatoolbox", "data/target_image.png", "target_image", "HISTO", "tissue"),
    _k("wsidicom_data", "data/test_tile.png", "test_tile", "HISTO", "tissue",
       note="the H&E tile the package also ships in 30+ DICOM encodings"),
)

# Files deliberately left out: name -> why. Names are matched against file basenames.
EXCLUDED: dict[str, str] = {
    **{n: "test pattern" for n in ("mlut_18.dcm", "vlut_04.dcm", "GDCMJ2K_TextGBR.dcm",
                                   "image_dfl.dcm", "JPEGLSNearLossless_08.dcm",
                                   "JPEGLSNearLossless_16.dcm")},
    "SC_rgb*.dcm": "colour bars",
    "SC_jpeg_no_color_transform*.dcm": "colour test image",
    "rtdose*.dcm": "10x10 dose grid",
    "liver*.dcm": "segmentation mask",
    "eCT_Supplemental.dcm": "derived map",
    "MR_truncated.dcm": "deliberately broken",
    "badVR.dcm": "deliberately broken",
    "JPEG2000-embedded-sequence-delimiter.dcm": "deliberately broken",
    "OT-PAL-8-face.dcm": "deliberately broken",
    "0.dcm": "synthetic ramp pixels",
    "1.dcm": "synthetic ramp pixels",
    "siemens_dwi_*": "all-zero pixels",
    "philips_mprage*": "all-zero pixels",
    "decimal_rescale*": "all-zero pixels",
    "sample_nifti.nii.gz": "all-zero 5^3 volume",
    "standard.nii.gz": "synthetic 4x5x7 volume",
    "functional.nii": "17x21x3 voxels: too small to be a training image",
    "1.3.12.2.1107.5.2.43.66112.2016101409263663466202201.dcm": "field-map phase, not magnitude",
    "phantom.dcm": "scout of a phantom, pixel values 0..6: noise around a dot",
    "0001.dcm": "scout with pixel values 0..25: mostly noise",
    "01+AA+00001.dcm": "scout with pixel values 0..9: mostly noise",
    "MR_small_*.dcm": "duplicate encoding of MR_small",
    "emri_small_*.dcm": "duplicate encoding of emri_small",
    "693_J2K*.dcm": "duplicate encoding of 693_UNCR",
    "693_UNCI.dcm": "duplicate encoding of 693_UNCR",
    **{f"{stem}_{enc}.dcm": f"duplicate encoding of {stem}_UNCR"
       for stem in ("MR2", "RG1", "RG3", "US1") for enc in ("J2KI", "J2KR", "UNCI")},
    "examples_jpeg2k.dcm": "same image as US1",
    "examples_rgb_color.dcm": "downsampled copy of US1",
    "examples_ybr_color.dcm": "frames of the colour cine",
    "ExplVR_BigEnd.dcm": "downsampled copy of US1",
    "OBXXXX1A_*.dcm": "duplicate encoding of OBXXXX1A",
    "gdcm-US-ALOKA-16_big.dcm": "duplicate encoding of gdcm-US-ALOKA-16",
    "color-px.dcm": "duplicate encoding of color-pl",
    "MR-SIEMENS-DICOM-WithOverlays.dcm": "same image as examples_overlay",
    "JPEG2000.dcm": "same whole-body NM image as JPEG-LL",
    "JPEG2000_UNC.dcm": "same whole-body NM image as JPEG-LL",
    "JPGExtended.dcm": "same whole-body NM image as JPEG-LL",
    "JPEG-lossy.dcm": "same whole-body NM image as JPEG-LL (and does not decode)",
    "example_nifti2.nii.gz": "crop of example4d",
    "reoriented_anat_moved.nii": "resampled copy of anatomical.nii",
    "resampled_anat_moved.nii": "resampled copy of anatomical.nii",
    "ascm_out_test.nii.gz": "denoised copy of aniso_vox",
    "small_*.nii*": "10^3-voxel diffusion toy volumes",
}


def read_image_list(path: str) -> list[Source]:
    """A site's own images as sources, from a CSV with columns path, modality, anatomy (needed)
    and layout, group (optional; layout "image", "volume" or "cine", default "image").

    Why: the packaged images give most modalities two to four training images and one test
    image. Corpus building takes more only from a list like this. The labels are the site's:
    modality and anatomy must name the taxonomy's entries. Rows of one patient should share a
    group, so that the patient never straddles two splits. Relative paths start at the CSV's
    folder; a path may be a file or a folder (a DICOM series). A source is named by its CSV row
    ("local:row7"), never by its path: folder and file names often carry patient names, and
    source names reach the corpus manifest and model cards. The group label is written to the
    manifest as given, so it should be a pseudonym."""
    import csv

    from mediqa_cli.taxonomy import ANATOMIES, MODALITIES

    base = os.path.dirname(os.path.abspath(path))
    out: list[Source] = []
    with open(path, newline="", encoding="utf-8-sig") as handle:  # a spreadsheet's BOM too
        reader = csv.DictReader(handle)
        missing = {"path", "modality", "anatomy"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            rel = (row.get("path") or "").strip()
            modality = (row.get("modality") or "").strip().upper()
            anatomy = (row.get("anatomy") or "").strip().lower()
            layout = (row.get("layout") or "").strip().lower() or IMAGE
            problem = ("empty path" if not rel
                       else f"modality {modality!r} not in {MODALITIES}"
                       if modality not in MODALITIES
                       else f"anatomy {anatomy!r} not in {ANATOMIES}"
                       if anatomy not in ANATOMIES
                       else f"layout {layout!r} not in {LAYOUTS}" if layout not in LAYOUTS
                       else None)
            if problem:
                raise ValueError(f"{path}, line {line}: {problem}")
            full = rel if os.path.isabs(rel) else os.path.join(base, rel)
            group = (row.get("group") or "").strip()
            out.append(Source(f"local:row{line}", (LOCAL, os.path.normpath(full)), modality,
                              anatomy, layout, f"local:{group}" if group else ""))
    places = [s.where[1] for s in out]
    if len(set(places)) != len(places):
        raise ValueError(f"{path}: a path is listed twice")
    return out


def package_dir(package: str) -> str | None:
    """The folder of an installed package, found without importing it (no-deps installs of
    heudiconv/fslpy/tiatoolbox may not import cleanly, and importing dipy/nilearn is slow)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def locate(source: Source, workdir: str) -> list[str] | str:
    """Paths to hand to the readers, or a string saying why the source is unavailable.

    Archives are extracted and gzip'd NIfTI is decompressed into `workdir`: the reader reads one
    slice at a time, and every slice read from a .nii.gz decompresses the file from its start.
    """
    kind, rel = source.where
    if kind == "pydicom":
        try:
            from pydicom.data import get_testdata_file
        except ImportError:
            return "pydicom not installed"
        path = get_testdata_file(rel)
        return [path] if path else f"{rel} not found (pip install pydicom-data)"
    if kind == LOCAL:
        path = rel
        if not os.path.exists(path):
            return f"{rel} not found"
    else:
        root = package_dir(kind)
        if root is None:
            return f"package {kind} not installed"
        path = os.path.join(root, rel)
        if not os.path.exists(path):
            return f"{rel} not in the installed {kind}"
    stem = source.id.replace(":", "_")
    if path.endswith(".tbz2"):
        target = os.path.join(workdir, stem)
        with tarfile.open(path) as archive:
            archive.extractall(target, filter="data")
        return [target]
    if path.endswith(".nii.gz"):
        target = os.path.join(workdir, f"{stem}.nii")
        with gzip.open(path, "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
        return [target]
    return [path]


def display_path(path: str) -> str:
    """A path relative to site-packages (or the temp folder): no machine-specific prefix."""
    parts = path.replace("\\", "/").split("/")
    for anchor in ("site-packages", "dist-packages"):
        if anchor in parts:
            return "/".join(parts[parts.index(anchor) + 1:])
    return "/".join(parts[-3:])


def excluded_reason(name: str) -> str | None:
    """Why a file name is excluded from the corpus, or None when it is not."""
    import fnmatch

    for pattern, reason in EXCLUDED.items():
        if fnmatch.fnmatchcase(name, pattern):
            return reason
    return None

