"""The one result type (`ScanResult`) and the one report schema (columns, order, types, units).

Everything the pipeline learns about a scan lands in a `ScanResult`; every sink (CSV, JSONL,
HDF5, Parquet, the journal, stdout) serialises the public row that `mediqa_cli.privacy` makes
from it, in the column order declared here. A column is declared once, with its type and unit,
and README "Report columns" lists the same table. Identifiers come first, then score and grade,
then how the scan was read, then the measurements, then provenance.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

import mediqa_cli
from mediqa_cli.io.scan import Scan, ScanProblem
from mediqa_cli.iqm import IQM_KEYS
from mediqa_cli.taxonomy import PHYSICAL_FAMILIES

# Column groups decide who may see a column: "phi" only with --include-phi, "descriptor" not
# under --deid strict; every other column is always written.
PUBLIC, DESCRIPTOR, PHI = "public", "descriptor", "phi"


@dataclass(frozen=True)
class Column:
    """One report column: name, type (str, int, float, list[int], timestamp), unit, meaning."""

    name: str
    dtype: str
    unit: str = ""
    meaning: str = ""
    group: str = PUBLIC


def _c(name: str, dtype: str, unit: str = "", meaning: str = "", group: str = PUBLIC) -> Column:
    return Column(name, dtype, unit, meaning, group)


PHYSICAL_COLUMNS: tuple[str, ...] = tuple(f"phys_{family}" for family in PHYSICAL_FAMILIES)
IQM_COLUMNS: tuple[str, ...] = IQM_KEYS

SCHEMA: tuple[Column, ...] = (
    _c("path", "str", "", "the file, or a series' folder, relative to the input's parent folder; "
       "components holding a patient/study/series value are replaced by its pseudonym"),
    _c("scan_id", "str", "", "stable non-identifying id: hash of the file paths (+ series key)"),
    _c("patient_pseudonym", "str", "",
       "keyed pseudonym (HMAC-SHA256, site key) of PatientID (else PatientName)"),
    _c("study_pseudonym", "str", "", "keyed pseudonym of StudyInstanceUID (else AccessionNumber)"),
    _c("series_pseudonym", "str", "", "keyed pseudonym of SeriesInstanceUID"),
    _c("score", "float", "0-100", "quality on the calibrated scale, higher is better (empty "
       "without model weights; see \"Calibrated scale\")"),
    _c("grade", "str", "", "A (>= 80): clean or barely degraded, B (>= 60), C (>= 40), "
       "D (< 40): severely degraded"),
    _c("status", "str", "", "ok, error or skipped"),
    _c("error", "str", "", "why the scan failed or was skipped"),
    _c("kind", "str", "", "dicom, nifti or raster"),
    _c("modality", "str", "", "CT, MR, XR, US, NM, FUNDUS, HISTO or OTHER"),
    _c("modality_source", "str", "",
       "dicom-tag, sidecar (BIDS JSON), header, file-name, override, predicted"),
    _c("anatomy", "str", "", "head, neck, chest, ... (README)"),
    _c("anatomy_source", "str", "", "same sources as modality"),
    _c("domain_distance", "float", "", "distance of the slices' physics to the training corpus "
       "over its threshold (> 1: unlike it; untagged: modality OTHER, see mediqa_cli.domain)"),
    _c("scanner_pseudonym", "str", "", "keyed pseudonym of StationName + DeviceSerialNumber",
       DESCRIPTOR),
    _c("manufacturer", "str", "", "DICOM Manufacturer", DESCRIPTOR),
    _c("manufacturer_model", "str", "", "DICOM ManufacturerModelName", DESCRIPTOR),
    _c("software_version", "str", "", "DICOM SoftwareVersions", DESCRIPTOR),
    _c("field_strength_t", "float", "T", "MR MagneticFieldStrength", DESCRIPTOR),
    _c("kvp", "float", "kV", "CT/X-ray peak kilovoltage (KVP)", DESCRIPTOR),
    _c("body_part", "str", "", "DICOM BodyPartExamined", DESCRIPTOR),
    _c("protocol_name", "str", "", "DICOM ProtocolName", DESCRIPTOR),
    _c("series_description", "str", "", "DICOM SeriesDescription", DESCRIPTOR),
    _c("shape", "str", "px", "slices x rows x cols (x3 for colour), for reading"),
    _c("n_slices", "int", "", "slices in the scan"),
    _c("rows", "int", "px", "pixel rows per slice"),
    _c("cols", "int", "px", "pixel columns per slice"),
    _c("channels", "int", "", "1 grey, 3 colour"),
    _c("spacing_slice_mm", "float", "mm", "distance between slices (empty where unknown)"),
    _c("spacing_row_mm", "float", "mm", "pixel spacing between rows"),
    _c("spacing_col_mm", "float", "mm", "pixel spacing between columns"),
    _c("n_files", "int", "", "files the scan came from"),
    *(_c(name, "float", "0-1", f"estimated severity of {name[5:]} (higher is worse)")
      for name in PHYSICAL_COLUMNS),
    _c("salient_slices", "list[int]", "", "assessed slice indices (CSV: ';'-separated)"),
    _c("worst_slice", "int", "", "lowest-scoring assessed slice"),
    _c("worst_slice_score", "float", "0-100", "its score"),
    *(_c(name, "float", "", "classical image quality metric (README)") for name in IQM_COLUMNS),
    _c("notes", "str", "", "non-fatal remarks"),
    _c("fingerprint", "str", "", "hash of file sizes and mtimes (--resume)"),
    _c("options", "str", "", "scoring options the row depends on (--resume)"),
    _c("read_seconds", "float", "s", "decoding and preparation time of this scan"),
    _c("score_seconds", "float", "s", "model time of this scan (its share of a packed batch)"),
    _c("model_version", "str", "", "model that scored the row"),
    _c("mediqa_version", "str", "", "MedIQA that wrote the row"),
    _c("scored_at", "timestamp", "UTC", "when the row was produced (ISO 8601, Z)"),
    _c("patient_name", "str", "", "PatientName", PHI),
    _c("patient_id", "str", "", "PatientID", PHI),
    _c("patient_birth_date", "str", "", "PatientBirthDate", PHI),
    _c("accession_number", "str", "", "AccessionNumber", PHI),
    _c("study_date", "str", "", "StudyDate (acquisition day)", PHI),
    _c("institution_name", "str", "", "InstitutionName", PHI),
)

BY_NAME: dict[str, Column] = {column.name: column for column in SCHEMA}
PHI_COLUMNS: tuple[str, ...] = tuple(c.name for c in SCHEMA if c.group == PHI)
DESCRIPTOR_COLUMNS: tuple[str, ...] = tuple(c.name for c in SCHEMA if c.group == DESCRIPTOR)
COLUMNS: tuple[str, ...] = tuple(c.name for c in SCHEMA if c.group != PHI)

# Per-slice arrays (HDF5 detail); rows carry them under this key, flat sinks drop them.
DETAIL_KEY = "_slices"

# DICOM keyword -> PHI column (only written with --include-phi).
PHI_KEYWORD_TO_COLUMN: dict[str, str] = {
    "PatientName": "patient_name",
    "PatientID": "patient_id",
    "PatientBirthDate": "patient_birth_date",
    "AccessionNumber": "accession_number",
    "StudyDate": "study_date",
    "InstitutionName": "institution_name",
}


def columns_for(include_phi: bool, strict: bool = False) -> tuple[str, ...]:
    """The report's columns under a privacy policy, in schema order."""
    return tuple(
        c.name for c in SCHEMA
        if (include_phi or c.group != PHI) and not (strict and c.group == DESCRIPTOR)
    )


def significant(value: float) -> float | None:
    """Floats carry 6 significant digits in every format (what CSV shows), NaN/inf as empty."""
    if not math.isfinite(value):
        return None
    return float(f"{value:.6g}")


def utc_now() -> str:
    """`scored_at` value: UTC, seconds, ISO 8601 with Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ScanResult:
    """Everything known about one scan. Public columns are fields; `phi`, `identity` and the
    raw `paths` are private and only leave the process through `mediqa_cli.privacy`."""

    scan_id: str
    paths: tuple[str, ...]
    status: str
    kind: str
    path: str = ""  # display path as discovered (raw: privacy makes the public one)
    error: str | None = None
    modality: str | None = None
    modality_source: str | None = None
    anatomy: str | None = None
    anatomy_source: str | None = None
    domain_distance: float | None = None
    n_slices: int | None = None
    rows: int | None = None
    cols: int | None = None
    channels: int | None = None
    spacing_mm: tuple[float, float, float] | None = None
    n_files: int = 0
    score: float | None = None
    # The score before the report's two decimals, never a column: near the top of the raw
    # scale neighbouring ladder steps differ in the fourth decimal, and rankings read this.
    exact_score: float | None = None
    grade: str | None = None
    physical: dict[str, float] = field(default_factory=dict)  # family -> severity
    salient_slices: list[int] | None = None
    worst_slice: int | None = None
    worst_slice_score: float | None = None
    iqms: dict[str, float] = field(default_factory=dict)  # iqm_* column -> value
    notes: list[str] = field(default_factory=list)
    fingerprint: str = ""
    options: str | None = None
    read_seconds: float | None = None
    score_seconds: float | None = None
    model_version: str | None = None
    mediqa_version: str | None = None
    scored_at: str | None = None
    descriptors: dict[str, Any] = field(default_factory=dict)  # descriptor column -> value
    phi: dict[str, str] = field(default_factory=dict)  # DICOM keyword -> value (private)
    identity: dict[str, str] = field(default_factory=dict)  # uids/station (private)
    detail: dict[str, Any] = field(default_factory=dict)  # per-slice arrays
    published: dict[str, Any] | None = None  # a public row read back (--resume): reused as is

    def fail(self, message: str) -> None:
        """Mark the scan as failed; scores already set are cleared."""
        self.status, self.error = "error", message

    def add_note(self, note: str) -> None:
        if note:
            self.notes.append(note)

    def get(self, column: str, default: Any = None) -> Any:
        """Read a report column (a dict-like view for callers that think in rows)."""
        value = self.column_values().get(column)
        return default if value is None else value

    def column_values(self) -> dict[str, Any]:
        """The values of every schema column except the ones privacy computes (path, pseudonyms,
        PHI columns)."""
        if self.published is not None:
            return dict(self.published)
        values: dict[str, Any] = {
            "scan_id": self.scan_id,
            "score": self.score,
            "grade": self.grade,
            "status": self.status,
            "error": self.error,
            "kind": self.kind,
            "modality": self.modality,
            "modality_source": self.modality_source,
            "domain_distance": self.domain_distance,
            "anatomy": self.anatomy,
            "anatomy_source": self.anatomy_source,
            "shape": self._shape(),
            "n_slices": self.n_slices,
            "rows": self.rows,
            "cols": self.cols,
            "channels": self.channels,
            "n_files": self.n_files,
            "salient_slices": self.salient_slices,
            "worst_slice": self.worst_slice,
            "worst_slice_score": self.worst_slice_score,
            "notes": "; ".join(self.notes) or None,
            "fingerprint": self.fingerprint,
            "options": self.options,
            "read_seconds": self.read_seconds,
            "score_seconds": self.score_seconds,
            "model_version": self.model_version,
            "mediqa_version": self.mediqa_version,
            "scored_at": self.scored_at,
        }
        if self.spacing_mm is not None:
            for name, value in zip(("spacing_slice_mm", "spacing_row_mm", "spacing_col_mm"),
                                   self.spacing_mm):
                values[name] = float(value) if math.isfinite(value) else None
        for family, value in self.physical.items():
            values[f"phys_{family}"] = value
        values.update(self.iqms)
        values.update(self.descriptors)
        for name, value in values.items():
            if isinstance(value, float):
                values[name] = significant(value)
        return values

    def _shape(self) -> str | None:
        if self.n_slices is None or self.rows is None or self.cols is None:
            return None
        dims = [self.n_slices, self.rows, self.cols] + ([3] if self.channels == 3 else [])
        return "x".join(str(d) for d in dims)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ScanResult:
        """A result standing for a published row read back from a report or journal."""
        detail = row.get(DETAIL_KEY) or {}
        public = {k: v for k, v in row.items() if k != DETAIL_KEY}
        return cls(
            scan_id=str(row.get("scan_id") or ""), paths=(), status=str(row.get("status") or ""),
            kind=str(row.get("kind") or ""), error=row.get("error"),
            fingerprint=str(row.get("fingerprint") or ""), options=row.get("options"),
            model_version=row.get("model_version"), score=_float_or_none(row.get("score")),
            detail=dict(detail), published=public,
        )


def _float_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


RESULT_FIELDS = frozenset(f.name for f in fields(ScanResult))


def display_path(paths: tuple[str, ...]) -> str:
    """One file: itself; a multi-file series: the folder holding it."""
    if len(paths) == 1:
        return paths[0]
    return os.path.commonpath([os.path.dirname(p) or "." for p in paths])


def new_result(item: Scan | ScanProblem, options: str | None = None) -> ScanResult:
    """The result of a scan (or problem) before any pixel is read: identity and geometry."""
    result = ScanResult(
        scan_id=item.scan_id, paths=tuple(item.paths), status="ok", kind=item.kind,
        path=display_path(tuple(item.paths)), n_files=len(item.paths),
        fingerprint=item.fingerprint, options=options, mediqa_version=mediqa_cli.__version__,
        scored_at=utc_now(), phi=dict(item.phi), identity=dict(item.identity),
    )
    if isinstance(item, ScanProblem):
        result.status, result.error = item.status, item.message
        return result
    result.modality = item.modality
    result.modality_source = item.modality_source if item.modality else None
    result.anatomy = item.anatomy
    result.anatomy_source = item.anatomy_source if item.anatomy else None
    result.n_slices, result.rows, result.cols = item.shape
    result.channels = item.channels
    result.spacing_mm = tuple(float(v) for v in item.spacing)  # type: ignore[assignment]
    result.notes = list(item.notes)
    result.descriptors = dict(item.descriptors)
    return result
