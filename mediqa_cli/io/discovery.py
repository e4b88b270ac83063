"""Walk input paths and turn files into Scans and problem rows, streaming, one folder at a time.

DICOM is recognised by content (the DICM magic, or a forced parse that yields image
attributes), never by extension; volumes and raster images by extension. DICOM grouping happens
per folder, which is how scanners and PACS exports lay series out, so memory stays bounded by
the largest folder, not the archive.
"""

from __future__ import annotations

import errno
import os
import stat
import warnings
from collections.abc import Iterable, Iterator, Sequence

from mediqa_cli.io.dicom import (
    DicomFileInfo,
    file_info,
    group_series,
    looks_like_dicom,
    try_read_header,
)
from mediqa_cli.io.nifti import is_volume_path, read_volume
from mediqa_cli.io.raster import is_raster_path, read_raster
from mediqa_cli.io.scan import Scan, ScanProblem

_IGNORED_NAMES = frozenset({"DICOMDIR", "Thumbs.db", "desktop.ini"})
_TEXT_SUFFIXES = (".txt", ".md", ".csv", ".json", ".jsonl", ".xml", ".html", ".h5", ".log", ".py")


class InputPathError(Exception):
    """An input path given on the command line does not exist or cannot be read at all."""


def discover(
    paths: Sequence[str], exclude: Iterable[str] = ()
) -> Iterator[Scan | ScanProblem]:
    """Yield every Scan and problem row under the given files/folders, in a stable order.

    `exclude` names files to pass over (the run's own report and journal).
    """
    excluded = frozenset(os.path.abspath(p) for p in exclude)
    for path in paths:
        if not os.path.lexists(path):
            raise InputPathError(f"input path does not exist: {path}")
        if os.path.isdir(path):
            if not os.access(path, os.R_OK | os.X_OK):
                raise InputPathError(f"input folder is not readable: {path}")
            yield from _walk(path, excluded)
        else:
            yield from _files_in_folder([path], explicit=True)


def read_files(paths: Sequence[str]) -> Iterator[Scan | ScanProblem]:
    """The scans of exactly these files, grouped as one folder's files are (a series' files give
    one Scan with the same scan_id as in a walk): how a report's scan is read again later."""
    yield from _files_in_folder(list(paths), explicit=True)


def _walk(root: str, excluded: frozenset[str]) -> Iterator[Scan | ScanProblem]:
    """Depth-first, sorted walk; follows folder links once, reports loops and unreadable folders."""
    visited: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
        except OSError as exc:
            yield ScanProblem((folder,), "error", _os_message(exc), kind="folder")
            continue
        key = (st.st_dev, st.st_ino)
        if key in visited:
            yield ScanProblem(
                (folder,), "skipped", "folder already visited (symbolic link loop)", kind="folder"
            )
            continue
        visited.add(key)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            yield ScanProblem((folder,), "error", _os_message(exc), kind="folder")
            continue
        files, subfolders = split_entries(entries, excluded)
        yield from _files_in_folder(files, explicit=False)
        stack.extend(reversed(subfolders))


def split_entries(entries: Iterable[os.DirEntry], excluded: frozenset[str]
                  ) -> tuple[list[str], list[str]]:
    """(files, subfolders) of one folder's entries as the walk takes them: hidden files,
    DICOMDIR and OS litter and the excluded paths left out, links to folders counted as
    folders. The progress bar's file count walks with the same rule."""
    files, subfolders = [], []
    for entry in entries:
        if entry.name.startswith(".") or entry.name in _IGNORED_NAMES:
            continue
        if os.path.abspath(entry.path) in excluded:
            continue
        try:
            is_dir = entry.is_dir(follow_symlinks=True)
        except OSError:
            is_dir = False
        (subfolders if is_dir else files).append(entry.path)
    return files, subfolders


def _files_in_folder(paths: Iterable[str], explicit: bool) -> Iterator[Scan | ScanProblem]:
    """Classify one folder's files; DICOM headers are grouped into series at the end."""
    dicom_infos: list[DicomFileInfo] = []
    for path in paths:
        lower = path.lower()
        if lower.endswith(_TEXT_SUFFIXES) and not explicit:
            yield ScanProblem((path,), "ignored", "not an image file", kind="unknown")
            continue
        problem = _unreadable(path)
        if problem is not None:
            yield problem
            continue
        if is_volume_path(path):
            yield read_volume(path)
            continue
        if is_raster_path(path):
            yield read_raster(path)
            continue
        info_or_problem = _dicom_info(path, claims_dicom=lower.endswith((".dcm", ".dicom")))
        if isinstance(info_or_problem, DicomFileInfo):
            dicom_infos.append(info_or_problem)
        elif info_or_problem is not None:
            yield info_or_problem
        elif explicit:
            yield ScanProblem((path,), "error", "not a recognised image format", kind="unknown")
        else:
            yield ScanProblem((path,), "ignored", "not a recognised image format", kind="unknown")
    if dicom_infos:
        yield from group_series(dicom_infos)


def _dicom_info(path: str, claims_dicom: bool) -> DicomFileInfo | ScanProblem | None:
    """Header of a DICOM file; a problem row for a broken one; None for a non-DICOM file."""
    magic = looks_like_dicom(path)
    with warnings.catch_warnings():
        # pydicom warns on every odd value; the report carries what matters.
        warnings.simplefilter("ignore")
        try:
            ds = try_read_header(path, force=not magic)
        except Exception as exc:  # noqa: BLE001 - truncated or corrupt headers raise anything
            return ScanProblem((path,), "error", f"corrupt DICOM header: {exc}", kind="dicom")
        if ds is None:
            if magic:
                return ScanProblem((path,), "error", "corrupt DICOM header", kind="dicom")
            if claims_dicom:
                return ScanProblem(
                    (path,), "error", "file named .dcm is not DICOM (no DICM magic, no parse)",
                    kind="dicom",
                )
            return None
        try:
            return file_info(path, ds)
        except Exception as exc:  # noqa: BLE001 - invalid values surface on access
            return ScanProblem((path,), "error", f"invalid DICOM header: {exc}", kind="dicom")


def _unreadable(path: str) -> ScanProblem | None:
    """Problem row for missing, looping, non-regular, empty or unreadable files."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return ScanProblem((path,), "error", _os_message(exc), kind="unknown")
    if not stat.S_ISREG(st.st_mode):
        return ScanProblem((path,), "skipped", "not a regular file", kind="unknown")
    if st.st_size == 0:
        return ScanProblem((path,), "error", "empty file (0 bytes)", kind="unknown")
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        return ScanProblem((path,), "error", _os_message(exc), kind="unknown")
    return None


def _os_message(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENOENT:
        return "file not found (broken link?)"
    return f"cannot read: {exc.strerror or exc}"
