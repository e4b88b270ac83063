"""What may leave the machine: the one privacy gate between a `ScanResult` and every output.

Policy (README "Privacy"):
- Patient, study, series and scanner are named by keyed pseudonyms: HMAC-SHA256 of the
  identifying value under a site key, so the same patient gets the same pseudonym every night
  and at no other site. The key is created on first use in the user's config folder
  (`$MEDIQA_CONFIG_DIR`, else `$XDG_CONFIG_HOME/mediqa`, else `~/.config/mediqa`), or read from
  `--pseudonym-key FILE`.
- Paths are relative to the input's parent folder; a path component that holds a patient name
  part, patient ID, birth date, accession number, study date or a study/series UID (as whole
  tokens, from the tags of any scan of the run) is replaced by the pseudonym it belongs to (the
  file extension stays). Rows of files that could not be read carry no tags of their own: they
  are published at the end of the run, when every value of the run is known.
- Descriptors (manufacturer, model, software, field strength, kVp, body part, protocol, series
  description) are kept, as DICOM PS3.15 "retain device/descriptor" options allow; `--deid
  strict` drops them. Text cells and log lines are scrubbed of every known value.
- Names, IDs and dates are written only with `--include-phi`.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import re
import secrets
import string
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mediqa_cli.options import DEID_MODES
from mediqa_cli.results import (
    DETAIL_KEY,
    PHI_KEYWORD_TO_COLUMN,
    ScanResult,
    columns_for,
)

KEY_FILE = "pseudonym.key"

# Which pseudonym a PHI value found in a path stands for.
_PATIENT_KEYS = ("PatientName", "PatientID", "PatientBirthDate")
_STUDY_KEYS = ("AccessionNumber", "StudyDate", "StudyInstanceUID")
_SERIES_KEYS = ("SeriesInstanceUID",)
_MIN_TOKEN = 3  # shorter name parts ("Li", "Wu") would hit unrelated words
_WORD = frozenset(string.ascii_letters + string.digits)  # a value is found only between others


@functools.lru_cache(maxsize=4096)
def _fold_char(char: str) -> str:
    """One character's case-free form, one character long: its lower case (the three Greek
    sigmas as one), or itself where the lower case is longer ("İ" -> "i̇")."""
    lower = char.lower()
    return "σ" if lower == "ς" else lower if len(lower) == 1 else char


def _fold(text: str) -> str:
    """`text` without case, character for character (so positions in it are positions in text;
    str.lower() may lengthen a string and lowers a final sigma differently)."""
    return "".join(map(_fold_char, text))


class KnownValues:
    """Identifying values and their pseudonyms, found in text as whole tokens.

    A value matches where no ASCII letter or digit touches it on either side, case-insensitively;
    at each place the longest value wins, scanning left to right (what one regex alternation of
    every value, longest first, finds). Why not that regex: it has to be recompiled whenever a
    scan brings new values, and compiling costs as much as the values it holds, so a run of n
    patients spent O(n^2) there (1,000 patients: 71 s). Here a lookup costs the same
    whatever the number of values: each place a token can start is tried against the dictionary
    with each place it can end, at most `longest` characters on.
    """

    def __init__(self) -> None:
        self._tokens: dict[str, str] = {}  # case-folded value (`_fold`) -> pseudonym
        self._longest = 0

    def __bool__(self) -> bool:
        return bool(self._tokens)

    def __contains__(self, value: str) -> bool:
        return _fold(value) in self._tokens

    def add(self, value: str, token: str) -> None:
        folded = _fold(value)
        self._tokens[folded] = token
        self._longest = max(self._longest, len(folded))

    def matches(self, text: str) -> Iterator[tuple[int, int, str]]:
        """(start, end, pseudonym) of each value in `text`, left to right, not overlapping."""
        if not self._tokens or not text:
            return
        folded = _fold(text)
        ends = [e for e in range(1, len(text) + 1) if e == len(text) or text[e] not in _WORD]
        start = 0
        while start < len(text):
            found = None
            if start == 0 or text[start - 1] not in _WORD:
                first, last = bisect_right(ends, start), bisect_right(ends, start + self._longest)
                for end in reversed(ends[first:last]):
                    token = self._tokens.get(folded[start:end])
                    if token is not None:
                        found = end, token
                        break
            if found is None:
                start += 1
                continue
            yield start, found[0], found[1]
            start = found[0]

    def first(self, text: str) -> str | None:
        """The pseudonym of the first value in `text`, None without one."""
        return next((token for _, _, token in self.matches(text)), None)

    def replace(self, text: str) -> str:
        """`text` with every value replaced by its pseudonym."""
        pieces, done = [], 0
        for start, end, token in self.matches(text):
            pieces += [text[done:start], token]
            done = end
        return "".join(pieces) + text[done:] if pieces else text


def config_dir() -> Path:
    """Where the site key lives: $MEDIQA_CONFIG_DIR, $XDG_CONFIG_HOME/mediqa, ~/.config/mediqa."""
    explicit = os.environ.get("MEDIQA_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "mediqa"


def load_key(path: str | os.PathLike[str] | None = None) -> bytes:
    """The site key: the given file's bytes, or the config folder's key (created on first use,
    32 random bytes, mode 0600: whoever holds it can test a guessed ID against a pseudonym)."""
    if path is not None:
        data = Path(path).read_bytes().strip()
        if len(data) < 16:
            raise ValueError(f"pseudonym key {path} is shorter than 16 bytes")
        return data
    target = config_dir() / KEY_FILE
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(32) + "\n")
    return target.read_bytes().strip()


class Privacy:
    """The gate: learns identifying values from results, publishes rows, scrubs text."""

    def __init__(self, inputs: Iterable[str], include_phi: bool = False, deid: str = "default",
                 key: bytes | None = None) -> None:
        if deid not in DEID_MODES:
            raise ValueError(f"unknown --deid {deid!r}; choose one of {', '.join(DEID_MODES)}")
        self.include_phi = include_phi
        self.strict = deid == "strict"
        self.key = key if key is not None else load_key()
        self.roots = [os.path.abspath(p) for p in inputs]
        self.columns = columns_for(include_phi, self.strict)
        self._known = KnownValues()

    # -- pseudonyms -------------------------------------------------------------------------
    def pseudonym(self, kind: str, value: str | None) -> str | None:
        """`kind` prefix + 16 hex of HMAC-SHA256(key, kind:value); None for an empty value."""
        text = (value or "").strip()
        if not text:
            return None
        digest = hmac.new(self.key, f"{kind}:{text}".encode(), hashlib.sha256).hexdigest()
        return f"{kind}-{digest[:16]}"

    def _identities(self, result: ScanResult) -> dict[str, str | None]:
        phi, ids = result.phi, result.identity
        patient = phi.get("PatientID") or phi.get("PatientName")
        scanner = "|".join(filter(None, (ids.get("StationName"), ids.get("DeviceSerialNumber"))))
        return {
            "patient_pseudonym": self.pseudonym("pat", patient),
            "study_pseudonym": self.pseudonym("study", ids.get("StudyInstanceUID")
                                              or phi.get("AccessionNumber")),
            "series_pseudonym": self.pseudonym("series", ids.get("SeriesInstanceUID")),
            "scanner_pseudonym": self.pseudonym("scanner", scanner),
        }

    def learn(self, result: ScanResult) -> None:
        """Remember the result's identifying values (for paths, text cells and log lines)."""
        if result.published is not None:
            return
        names = self._identities(result)
        values = {**result.phi, **result.identity}
        for keys, column in ((_PATIENT_KEYS, "patient_pseudonym"),
                             (_STUDY_KEYS, "study_pseudonym"), (_SERIES_KEYS, "series_pseudonym")):
            token = names[column] or names["patient_pseudonym"] or "[redacted]"
            for keyword in keys:
                raw = (values.get(keyword) or "").strip()
                parts = {raw}
                if keyword == "PatientName":
                    parts |= {p for p in re.split(r"[\^\s,]+", raw) if p}
                for part in parts:
                    if len(part) >= _MIN_TOKEN and part not in self._known:
                        self._known.add(part, token)
        for keyword in ("InstitutionName", "StationName", "DeviceSerialNumber"):
            raw = (values.get(keyword) or "").strip()
            if len(raw) >= _MIN_TOKEN and raw not in self._known:
                self._known.add(raw, names["scanner_pseudonym"] or "[redacted]")

    # -- text -------------------------------------------------------------------------------
    def scrub(self, text: str) -> str:
        """Replace every known identifying value in free text by its pseudonym."""
        if not self._known or not text or self.include_phi:
            return text
        return self._known.replace(text)

    def public_path(self, raw: str) -> str:
        """Relative to the input's parent; components holding a known value become pseudonyms."""
        absolute = os.path.abspath(raw)
        relative = raw
        for root in sorted(self.roots, key=len, reverse=True):
            if absolute == root or absolute.startswith(root.rstrip(os.sep) + os.sep):
                relative = os.path.relpath(absolute, os.path.dirname(root) or os.sep)
                break
        if self.include_phi or not self._known:
            return relative
        parts = []
        for part in relative.split(os.sep):
            token = self._known.first(part)
            if token is None:
                parts.append(part)
                continue
            stem, suffix = _split_suffix(part)
            parts.append(token + suffix if self._known.first(stem) is not None else part)
        return os.sep.join(parts)

    # -- rows -------------------------------------------------------------------------------
    def publish(self, result: ScanResult) -> dict[str, Any]:
        """The public row of a result: this policy's columns (schema order) + per-slice detail."""
        if result.published is not None:
            row = {column: result.published.get(column) for column in self.columns}
            row[DETAIL_KEY] = result.detail
            return row
        self.learn(result)
        values = result.column_values()
        values.update({k: v for k, v in self._identities(result).items() if k in self.columns})
        values["path"] = self.public_path(result.path)
        if self.include_phi:
            for keyword, column in PHI_KEYWORD_TO_COLUMN.items():
                values[column] = result.phi.get(keyword) or None
        row = {column: values.get(column) for column in self.columns}
        for column in ("error", "notes", "protocol_name", "series_description"):
            if isinstance(row.get(column), str):
                row[column] = self.scrub(row[column])
        row[DETAIL_KEY] = result.detail
        return row

    # -- logs -------------------------------------------------------------------------------
    def relative_paths(self, text: str) -> str:
        """Scan paths in free text (library lines at -vv) made relative like report paths: the
        folders above an input (often a patient's name or a date) are not the report's."""
        if self.include_phi:
            return text
        for root in sorted(self.roots, key=len, reverse=True):
            parent = os.path.dirname(root)
            if parent and parent != os.sep:
                text = text.replace(parent + os.sep, "")
        return text

    def log_filter(self) -> logging.Filter:
        """A filter that scrubs every record's message (installed on the handlers of a run)."""
        gate = self

        class _Scrub(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                message = record.getMessage()
                cleaned = gate.scrub(gate.relative_paths(message))
                if cleaned != message:
                    record.msg, record.args = cleaned, None
                return True

        return _Scrub()


def _split_suffix(name: str) -> tuple[str, str]:
    """('IM_DOE', '.dcm'); keeps double suffixes such as .nii.gz."""
    lower = name.lower()
    for suffix in (".nii.gz", ".tar.gz"):
        if lower.endswith(suffix):
            return name[: -len(suffix)], name[-len(suffix):]
    stem, dot, ext = name.rpartition(".")
    if dot and stem and len(ext) <= 5:
        return stem, "." + ext
    return name, ""
