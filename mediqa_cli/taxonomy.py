"""The shared vocabulary: modalities, anatomies and physical-parameter families.

One source of truth for the readers (which map DICOM codes onto it), the model's prompt bank
(one embedding per entry), the degradation simulators (which report severities per family) and
the report columns. Changing an order here changes weight layouts: append, never reorder.
"""

from __future__ import annotations

import math

MODALITIES: tuple[str, ...] = ("CT", "MR", "XR", "US", "NM", "FUNDUS", "HISTO", "OTHER")

ANATOMIES: tuple[str, ...] = (
    "head",
    "neck",
    "chest",
    "abdomen",
    "pelvis",
    "spine",
    "upper_limb",
    "lower_limb",
    "breast",
    "whole_body",
    "eye",
    "tissue",
    "other",
)

# Physical causes of poor quality; each is a task query in the model and a report column.
PHYSICAL_FAMILIES: tuple[str, ...] = (
    "noise",
    "blur",
    "motion",
    "ghosting",
    "bias",
    "undersampling",
    "streaks",
    "exposure",
    "compression",
)

# DICOM (0008,0060) Modality codes onto our coarse modality set.
DICOM_MODALITY_MAP: dict[str, str] = {
    "CT": "CT",
    "MR": "MR",
    "CR": "XR",
    "DX": "XR",
    "DR": "XR",
    "MG": "XR",
    "RF": "XR",
    "XA": "XR",
    "IO": "XR",
    "PX": "XR",
    "US": "US",
    "IVUS": "US",
    "NM": "NM",
    "PT": "NM",
    "OP": "FUNDUS",
    "OPT": "FUNDUS",
    "XC": "FUNDUS",
    "SM": "HISTO",
    "GM": "HISTO",
}

# DICOM objects that carry no image to score.
NON_IMAGE_MODALITIES: frozenset[str] = frozenset(
    {"SR", "RTSTRUCT", "RTPLAN", "RTRECORD", "PR", "SEG", "KO", "REG", "DOC", "ECG", "AU", "FID",
     "RTDOSE", "HC", "PLAN", "RWV", "SMR"}
)

# Free-text body-part words (BodyPartExamined, descriptions, file names) onto anatomies.
ANATOMY_KEYWORDS: dict[str, tuple[str, ...]] = {
    "head": ("head", "brain", "skull", "cerebr", "cranial", "neuro", "t1w", "mni", "epi", "dwi"),
    "neck": ("neck", "cervical", "thyroid", "larynx"),
    "chest": ("chest", "thorax", "lung", "heart", "cardiac", "cxr"),
    "abdomen": ("abdomen", "abd", "liver", "pancrea", "kidney", "renal", "stomach"),
    "pelvis": ("pelvis", "hip", "prostate", "bladder", "uterus"),
    "spine": ("spine", "lumbar", "thoracic spine", "lspine", "cspine", "vertebra"),
    "upper_limb": ("shoulder", "elbow", "wrist", "hand", "arm", "humerus", "finger"),
    "lower_limb": ("knee", "ankle", "foot", "leg", "tibia", "femur", "fibula"),
    "breast": ("breast", "mammo"),
    "whole_body": ("whole body", "wholebody", "wb", "total body"),
    "eye": ("eye", "retina", "fundus", "ophthal"),
    "tissue": ("tissue", "histo", "slide", "h&e", "ihc", "biopsy", "pathology"),
}


def modality_from_dicom_code(code: str | None) -> str | None:
    """Map a DICOM Modality code to our set; None when unknown or empty."""
    if not code:
        return None
    return DICOM_MODALITY_MAP.get(code.strip().upper())


def anatomy_from_text(*texts: str | None) -> str | None:
    """First anatomy whose keyword appears in any text (case-insensitive), else None."""
    for text in texts:
        if not text:
            continue
        low = text.lower().replace("_", " ")
        for anatomy, words in ANATOMY_KEYWORDS.items():
            if any(_word_in(word, low) for word in words):
                return anatomy
    return None


def _word_in(word: str, text: str) -> bool:
    """Keyword match at a word start, so 'wb' does not match 'cobweb' but 'cerebr' matches."""
    start = 0
    while True:
        idx = text.find(word, start)
        if idx < 0:
            return False
        if idx == 0 or not text[idx - 1].isalnum():
            return True
        start = idx + 1


# Grade boundaries on the 0-100 score (README "Report columns"): reports, pages and trends share
# them. Grades C and D ("low grades") are what the trend charts count.
GRADES: tuple[tuple[float, str], ...] = ((80.0, "A"), (60.0, "B"), (40.0, "C"), (-math.inf, "D"))
LOW_GRADES: tuple[str, ...] = ("C", "D")


def grade_for(score: float) -> str:
    """The letter grade of a 0-100 score."""
    for bound, letter in GRADES:
        if score >= bound:
            return letter
    return "D"
