"""BIDS JSON sidecars: what a NIfTI header cannot say (modality, scanner, protocol).

Why: NIfTI has no modality, manufacturer or protocol field, so a nightly audit of a BIDS
archive (or of dcm2niix output) could not say which scanner got worse. BIDS keeps that in a
JSON file next to the image with the same stem (`sub-01_T1w.nii.gz` -> `sub-01_T1w.json`),
keyed by DICOM keywords ("Manufacturer", "MagneticFieldStrength", "SeriesDescription"; BIDS
spells the model "ManufacturersModelName"). Those values go where DICOM's go: the modality,
the descriptor columns, and (station, serial, UIDs, names, dates) the private identity and PHI
fields that only the privacy gate reads. Only the sidecar beside the file is read, not the
values a BIDS dataset may inherit from sidecars higher up its tree.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from mediqa_cli.io.dicom import (
    DESCRIPTOR_KEYWORDS,
    IDENTITY_KEYWORDS,
    PHI_KEYWORDS,
    descriptor_value,
    one_line,
)
from mediqa_cli.taxonomy import modality_from_dicom_code

# BIDS spellings that differ from the DICOM keyword -> report column.
_BIDS_DESCRIPTORS = {"ManufacturersModelName": "manufacturer_model", "BodyPart": "body_part"}
DESCRIPTOR_KEYS: dict[str, str] = {**DESCRIPTOR_KEYWORDS, **_BIDS_DESCRIPTORS}
# A sidecar is a few kB (dcm2niix's longest hold slice timings); larger is not a sidecar.
MAX_SIDECAR_BYTES = 1 << 20
_VOLUME_SUFFIXES = (".nii.gz", ".nii", ".mgz", ".mgh")


@dataclass
class Sidecar:
    """What one sidecar says; empty when there is none."""

    path: str | None = None
    modality_code: str = ""
    descriptors: dict[str, object] = field(default_factory=dict)
    identity: dict[str, str] = field(default_factory=dict)
    phi: dict[str, str] = field(default_factory=dict)
    note: str = ""

    @property
    def modality(self) -> str | None:
        """Our modality: the sidecar's Modality code, else MR when it gives a field strength."""
        mapped = modality_from_dicom_code(self.modality_code)
        if mapped is None and "field_strength_t" in self.descriptors:
            return "MR"
        return mapped

    @property
    def description(self) -> str:
        """Series description and protocol, as hints for the anatomy and the model's prompt."""
        return " ".join(
            str(self.descriptors[c]) for c in ("series_description", "protocol_name",
                                               "body_part") if c in self.descriptors
        )


def sidecar_path(volume: str) -> str:
    """`<stem>.json` beside `<stem>.nii[.gz]` (or .mgh/.mgz)."""
    lower = volume.lower()
    for suffix in _VOLUME_SUFFIXES:
        if lower.endswith(suffix):
            return volume[: -len(suffix)] + ".json"
    return os.path.splitext(volume)[0] + ".json"


def read_sidecar(volume: str) -> Sidecar:
    """The sidecar of a volume; a missing one is empty, a broken one is empty with a note."""
    path = sidecar_path(volume)
    if not os.path.isfile(path):
        return Sidecar()
    try:
        if os.path.getsize(path) > MAX_SIDECAR_BYTES:
            return Sidecar(path, note="BIDS sidecar ignored: larger than 1 MiB")
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        return Sidecar(path, note=f"BIDS sidecar ignored: {type(exc).__name__}")
    if not isinstance(data, dict):
        return Sidecar(path, note="BIDS sidecar ignored: not a JSON object")
    return Sidecar(
        path,
        modality_code=one_line(data.get("Modality")).upper(),
        descriptors=_descriptors(data),
        identity={k: one_line(data.get(k)) for k in IDENTITY_KEYWORDS if one_line(data.get(k))},
        phi={k: one_line(data.get(k)) for k in PHI_KEYWORDS if one_line(data.get(k))},
    )


def _descriptors(data: dict[str, object]) -> dict[str, object]:
    """Descriptor columns, coerced as DICOM's are (`descriptor_value`)."""
    out: dict[str, object] = {}
    for key, column in DESCRIPTOR_KEYS.items():
        if column in out:
            continue
        value = descriptor_value(column, data.get(key))
        if value is not None:
            out[column] = value
    return out


__all__ = ["Sidecar", "read_sidecar", "sidecar_path"]
