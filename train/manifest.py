"""The committed source manifest: every public image the corpus and the evaluation use, pinned.

Why a manifest and not the images: the images belong to their repositories (licences vary,
sizes add up) and are never committed here. Each row pins one file by repository, commit, path
and sha256, with what we know of it (modality, anatomy, a pseudonymous patient group, licence as
stated, and whether its pixels are original enough to serve as noise/compression ground truth).
Anyone can rebuild the same bytes: from a local bare git mirror (`--mirror DIR`, read with
`git cat-file`, no work tree needed) or, with internet, from the repository's raw file at the
pinned commit. The sha256 is checked either way, so a force-pushed or edited file is refused,
never silently used.

Rows are files; a patient's files share a `group`, which keeps a patient on one side of every
split and is the unit of the evaluation's folds and bootstrap. Groups are pseudonyms made when
the manifest was written (a truncated hash of the source's own patient key); no name, patient id
or date appears in the manifest.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import os
import re
import subprocess
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mediqa_train.sources import IMAGE, LAYOUTS, LOCAL, Source

DEFAULT_MANIFEST = Path(__file__).with_name("manifest.csv")
COLUMNS = ("origin", "revision", "path", "sha256", "modality", "anatomy", "layout", "group",
           "licence", "ground_truth", "note")
FOLDS = 5  # evaluation folds: a group's fold is fixed by its name, whatever else is listed
RAW_URL = "https://raw.githubusercontent.com/{repo}/{revision}/{path}"
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(ValueError):
    """A manifest row that cannot be used, or a file whose bytes are not the pinned ones."""


@dataclass(frozen=True)
class Entry:
    """One pinned file of the manifest."""

    origin: str  # "github:Owner/Name"
    revision: str  # 40-hex commit
    path: str  # inside the repository
    sha256: str
    modality: str
    anatomy: str
    layout: str
    group: str
    licence: str
    ground_truth: bool  # original pixels: usable as noise/compression ground truth
    note: str = ""

    @property
    def repo(self) -> str:
        return self.origin.split(":", 1)[1]

    @property
    def source_id(self) -> str:
        """A short, stable, non-identifying id (file names can carry patient names)."""
        return f"{self.repo.split('/')[1]}:{self.sha256[:12]}"

    @property
    def suffix(self) -> str:
        """The file's extension(s), kept so NIfTI/PNG/DICOM readers see what they expect."""
        name = self.path.rsplit("/", 1)[-1].lower()
        for double in (".nii.gz", ".tar.gz"):
            if name.endswith(double):
                return double
        return os.path.splitext(name)[1]

    @property
    def fold(self) -> int:
        return fold_of(self.group)


def fold_of(group: str, folds: int = FOLDS) -> int:
    """The evaluation fold of a group: a hash of its name, so adding sources moves no group."""
    return int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) % folds


def read_manifest(path: str | os.PathLike[str] = DEFAULT_MANIFEST) -> list[Entry]:
    """Parse and validate the manifest; a bad row is an error naming its line."""
    from mediqa_cli.taxonomy import ANATOMIES, MODALITIES

    entries: list[Entry] = []
    seen: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = set(COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ManifestError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            cell = {k: (row.get(k) or "").strip() for k in COLUMNS}
            kind, _, repo = cell["origin"].partition(":")
            problem = (
                f"origin {cell['origin']!r} is not github:Owner/Name"
                if kind != "github" or not _REPO.match(repo)
                else f"revision {cell['revision']!r} is not a 40-hex commit"
                if not _HEX40.match(cell["revision"])
                else "empty path" if not cell["path"]
                else f"sha256 {cell['sha256']!r} is not 64 hex digits"
                if not _HEX64.match(cell["sha256"])
                else f"modality {cell['modality']!r} not in {MODALITIES}"
                if cell["modality"] not in MODALITIES
                else f"anatomy {cell['anatomy']!r} not in {ANATOMIES}"
                if cell["anatomy"] not in ANATOMIES
                else f"layout {cell['layout']!r} not in {LAYOUTS}"
                if (cell["layout"] or IMAGE) not in LAYOUTS
                else "empty group" if not cell["group"]
                else f"ground_truth {cell['ground_truth']!r} is not yes/no"
                if cell["ground_truth"].lower() not in ("yes", "no")
                else f"same bytes as line {seen[cell['sha256']]}"
                if cell["sha256"] in seen
                else None
            )
            if problem:
                raise ManifestError(f"{path}, line {line}: {problem}")
            seen[cell["sha256"]] = line
            entries.append(Entry(
                origin=cell["origin"], revision=cell["revision"], path=cell["path"],
                sha256=cell["sha256"], modality=cell["modality"], anatomy=cell["anatomy"],
                layout=cell["layout"] or IMAGE, group=cell["group"], licence=cell["licence"],
                ground_truth=cell["ground_truth"].lower() == "yes", note=cell["note"]))
    return entries


def summary(entries: Iterable[Entry]) -> dict[str, dict[str, int]]:
    """Images and groups per modality, plus how many images may serve as ground truth."""
    images: dict[str, int] = defaultdict(int)
    truth: dict[str, int] = defaultdict(int)
    groups: dict[str, set[str]] = defaultdict(set)
    for entry in entries:
        images[entry.modality] += 1
        truth[entry.modality] += entry.ground_truth
        groups[entry.modality].add(entry.group)
    return {m: {"groups": len(groups[m]), "images": images[m], "ground_truth": truth[m]}
            for m in sorted(images)}


def find_mirror(mirror_root: str | os.PathLike[str], repo: str) -> Path | None:
    """The bare git directory of `repo` under `mirror_root`, in the layouts mirrors come in:
    `Owner+Name/repo`, `Owner+Name`, `Owner/Name.git`, `Owner/Name`."""
    owner, name = repo.split("/")
    root = Path(mirror_root)
    for candidate in (root / f"{owner}+{name}" / "repo", root / f"{owner}+{name}",
                      root / owner / f"{name}.git", root / owner / name):
        if (candidate / "objects").is_dir() or (candidate / ".git" / "objects").is_dir():
            return candidate if (candidate / "objects").is_dir() else candidate / ".git"
    return None


def read_from_mirror(entry: Entry, mirror_root: str | os.PathLike[str]) -> bytes:
    """The file's bytes at the pinned commit, from a local mirror (no work tree needed)."""
    git_dir = find_mirror(mirror_root, entry.repo)
    if git_dir is None:
        raise ManifestError(f"no mirror of {entry.repo} under {mirror_root}")
    done = subprocess.run(["git", f"--git-dir={git_dir}", "cat-file", "blob",
                           f"{entry.revision}:{entry.path}"], capture_output=True, check=False)
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        raise ManifestError(f"{entry.repo}@{entry.revision[:8]}: {entry.source_id} not in the "
                            f"mirror ({why[-1] if why else 'git failed'})")
    return done.stdout


def read_from_github(entry: Entry, timeout: float = 60.0) -> bytes:
    """The file's bytes at the pinned commit from GitHub's raw files (needs internet)."""
    from urllib.parse import quote

    url = RAW_URL.format(repo=entry.repo, revision=entry.revision, path=quote(entry.path))
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - fixed host
        return response.read()


def fetch_entry(entry: Entry, cache: str | os.PathLike[str],
                mirror_root: str | os.PathLike[str] | None = None) -> Path:
    """A local file holding the entry's bytes, checked against its sha256.

    Files are cached under `cache` by hash, so a second build reads nothing again. A mismatch
    raises and leaves no file behind.
    """
    gzipped_file = entry.suffix == ".gz"  # a gzipped DICOM (Canon, Philips exports)
    suffix = "" if gzipped_file else entry.suffix
    target = Path(cache) / entry.sha256[:2] / f"{entry.sha256}{suffix}"
    checked = target.with_name(target.name + ".sha256")  # "<pinned sha256> <kept file's sha256>"
    if target.is_file() and checked.is_file():
        pinned, _, kept = checked.read_text().partition(" ")
        if pinned == entry.sha256 and kept == hashlib.sha256(target.read_bytes()).hexdigest():
            return target
    data = (read_from_mirror(entry, mirror_root) if mirror_root is not None
            else read_from_github(entry))
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.sha256:
        raise ManifestError(f"{entry.source_id}: sha256 mismatch (got {digest[:12]}..., "
                            f"manifest says {entry.sha256[:12]}...)")
    if gzipped_file:
        data = gzip.decompress(data)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    partial.write_bytes(data)
    os.replace(partial, target)
    checked.write_text(f"{entry.sha256} {hashlib.sha256(data).hexdigest()}")
    return target


def as_sources(entries: Sequence[Entry], cache: str | os.PathLike[str],
               mirror_root: str | os.PathLike[str] | None = None,
               log=None) -> list[Source]:  # noqa: ANN001 - a print-like callable
    """Corpus sources for the entries that resolve; the others are logged and left out."""
    out: list[Source] = []
    for entry in entries:
        try:
            path = fetch_entry(entry, cache, mirror_root)
        except (ManifestError, OSError) as err:
            if log is not None:
                log(f"{entry.source_id}: {err}")
            continue
        out.append(Source(entry.source_id, (LOCAL, str(path)), entry.modality, entry.anatomy,
                          entry.layout, entry.group, note=entry.note))
    return out
