"""The training corpus: 2D slices of the real images in `sources.SOURCES`, in physical units.

Why this shape: pre-training degrades clean real anatomy on the fly (`mediqa_train.degrade`), and
the simulators work in physical units (HU, raw MR intensity, 0..255 photographs), so the corpus
stores slices *before* the model's normalisation, as the product's readers return them. Every
DICOM/NIfTI/raster source goes through `mediqa_cli.io.discover`, so the corpus sees exactly what
`mediqa score` sees; only `.npy` arrays are loaded with numpy.

- Volumes give slices in their native orientation and, when near-isotropic (voxel sides within a
  factor 2) and deep enough, the two orthogonal reformats too, with their own physical spacing.
  Near-empty slices (< 5 % foreground) are skipped and at most `cap` slices per orientation are
  kept, evenly spread, so a 189-slice template does not drown a single radiograph.
- Long sides are capped at `max_side` by area averaging; pixel spacing grows to match.
- Splits are by *source group* (one patient / acquisition), never by slice, and deterministic for
  a seed: every modality with three or more groups gets at least one test and one val group.
  A modality with fewer than four groups has its largest single 2D image cut into four spatially
  disjoint regions (a 2x2 grid, or four bands of an elongated image), each its own group: the only
  way to test a modality that ships one image (the whole-body NM scan, the fundus photograph).
  The summary says which sources were cut.

Layout on disk: `manifest.jsonl` (one row per slice), `sources.jsonl` (one row per source),
`summary.json`, and HDF5 shards `{split}-{k:03d}.h5` with one dataset per slice (float32 for CT,
float16 elsewhere when the range allows; gzip). `open_corpus` reads it back into memory.
"""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from mediqa_train.sources import (
    CINE,
    LOCAL,
    SOURCES,
    VOLUME,
    Source,
    display_path,
    excluded_reason,
    locate,
)

SPLITS: tuple[str, ...] = ("train", "val", "test")
MIN_SIDE = 32  # smaller slices carry too little texture for 16-px patches
MIN_FOREGROUND = 0.05
ISOTROPY = 2.0  # reformat when the largest voxel side is at most this times the smallest
MIN_REFORMAT_DEPTH = 32  # slices a volume needs before its reformats are images worth keeping
CINE_FRAMES = 8  # cine frames are highly correlated: a few spread over the loop are enough
SHARD_SLICES = 2000
FLOAT16_MAX = 65000.0
MIN_GROUPS = 4  # fewer source groups than this: cut one image into regions (train keeps >= 2)


@dataclass
class CorpusSlice:
    """One 2D slice: (H, W) grey or (3, H, W) colour, float32, physical units."""

    image: np.ndarray
    spacing: tuple[float, float]  # (row_mm, col_mm); NaN when unknown
    source: str
    group: str
    modality: str
    anatomy: str
    orientation: str  # native | reformat_row | reformat_col | frame | region
    index: int
    split: str = ""


@dataclass
class SourceReport:
    """What one catalogue entry contributed (or why it did not)."""

    id: str
    modality: str
    anatomy: str
    group: str
    paths: list[str] = field(default_factory=list)
    n_slices: int = 0
    orientations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    split: str = ""


# --------------------------------------------------------------------------- extraction


def _scans(source: Source, paths: list[str], report: SourceReport) -> Iterator[tuple[object, str]]:
    """The product readers' Scans for a source (or a numpy array for .npy), with a label."""
    from mediqa_cli.io import Scan, discover

    if paths[0].endswith(".npy"):
        array = np.load(paths[0]).astype(np.float32)
        report.paths.append(display_path(paths[0]))
        yield array, ""
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = list(discover(paths))
    scans = [s for s in found if isinstance(s, Scan)]
    for problem in found:
        if not isinstance(problem, Scan) and problem.status == "error":
            report.notes.append(f"reader: {problem.message}")
    # A site's own files: the exclusions name package test files (its "0001.dcm" is a real
    # slice), and its paths may name patients (its CSV row names it instead).
    local = source.where[0] == LOCAL
    for k, scan in enumerate(scans):
        bad = [] if local else [p for p in scan.paths if excluded_reason(os.path.basename(p))]
        if bad:
            report.notes.append(f"skipped excluded file {os.path.basename(bad[0])}")
            continue
        if not local:
            report.paths.extend(display_path(p) for p in scan.paths)
        yield scan, (f"s{k}" if len(scans) > 1 else "")


def _read(scan: object, indices: Sequence[int]) -> np.ndarray:
    """Slices as float32 (n, H, W) or (n, H, W, 3); 16-bit colour brought to 0..255."""
    slices = [np.asarray(scan.read_slice(int(i)), dtype=np.float32) for i in indices]  # type: ignore[attr-defined]
    stack = np.stack(slices)
    if stack.ndim == 4 and np.nanmax(stack) > 255.0:
        stack = stack * (255.0 / 65535.0)  # 16-bit palettes / 16-bit RGB
    return stack


def _finite(image: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(image)
    if bad.any():
        fill = float(np.nanmin(np.where(bad, np.nan, image))) if (~bad).any() else 0.0
        image = np.where(bad, fill, image)
    return image


def _foreground_fractions(volume: np.ndarray, axis: int) -> np.ndarray:
    """Fraction of pixels above a volume-level threshold, per slice along `axis`.

    The threshold (10 % of the way from the 0.5th to the 99.5th percentile of the whole volume)
    is set once per volume, so the empty slices at a volume's ends score near zero.
    """
    sample = volume[:: max(1, volume.shape[0] // 16)]
    lo, hi = np.percentile(sample, [0.5, 99.5])
    mask = volume > lo + 0.1 * (hi - lo)
    other = tuple(a for a in range(volume.ndim) if a != axis)
    return mask.mean(axis=other)


def _spread(candidates: Sequence[int], cap: int) -> list[int]:
    """At most `cap` of the candidates, evenly spread (first and last included)."""
    if len(candidates) <= cap:
        return list(candidates)
    picks = np.linspace(0, len(candidates) - 1, cap).round().astype(int)
    return [candidates[i] for i in sorted(set(picks.tolist()))]


def _volume_slices(volume: np.ndarray, spacing: tuple[float, float, float], cap: int,
                   ) -> Iterator[tuple[str, int, np.ndarray, tuple[float, float]]]:
    """(orientation, index, slice, (row_mm, col_mm)) for the native stack and its reformats."""
    s_mm, r_mm, c_mm = spacing
    views: list[tuple[str, int, tuple[float, float]]] = [("native", 0, (r_mm, c_mm))]
    finite = all(math.isfinite(v) and v > 0 for v in spacing)
    if (finite and max(spacing) <= ISOTROPY * min(spacing)
            and volume.shape[0] >= MIN_REFORMAT_DEPTH):
        views += [("reformat_row", 1, (s_mm, c_mm)), ("reformat_col", 2, (s_mm, r_mm))]
    for orientation, axis, plane_spacing in views:
        fractions = _foreground_fractions(volume, axis)
        keep = [i for i, f in enumerate(fractions) if f >= MIN_FOREGROUND]
        for index in _spread(keep, cap):
            image = np.take(volume, index, axis=axis)
            if axis:
                image = np.flipud(image)  # slice position runs bottom-to-top: feet down
            yield orientation, index, np.ascontiguousarray(image), plane_spacing


def _downsample(image: np.ndarray, spacing: tuple[float, float], max_side: int,
                ) -> tuple[np.ndarray, tuple[float, float]]:
    """Area-average so the long side is at most `max_side`; spacing grows with the step."""
    h, w = image.shape[-2:]
    if max(h, w) <= max_side:
        return image.astype(np.float32, copy=False), spacing
    scale = max_side / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    chw = t if t.dim() == 3 else t[None]
    out = F.interpolate(chw[None], size=(nh, nw), mode="area")[0]
    out = out if t.dim() == 3 else out[0]
    return out.numpy(), (spacing[0] * h / nh, spacing[1] * w / nw)


def extract(source: Source, workdir: str, max_side: int, cap: int,
            ) -> tuple[list[CorpusSlice], SourceReport]:
    """All slices one source contributes, at up to 2x `max_side` (regions may be cut later)."""
    report = SourceReport(source.id, source.modality, source.anatomy, source.split_group)
    located = locate(source, workdir)
    if isinstance(located, str):
        report.notes.append(located)
        return [], report
    out: list[CorpusSlice] = []
    for scan, label in _scans(source, located, report):
        sid = f"{source.id}/{label}" if label else source.id
        if isinstance(scan, np.ndarray):
            spacing3 = (math.nan, math.nan, math.nan)
            views = [("native", 0, scan, (math.nan, math.nan))]
        else:
            spacing3 = tuple(v if v > 0 else math.nan for v in scan.spacing)  # type: ignore[attr-defined]
            n = scan.n_slices  # type: ignore[attr-defined]
            if source.layout == CINE:
                idx = _spread(range(n), CINE_FRAMES)
                frames = _read(scan, idx)
                views = [("frame", i, f, spacing3[1:]) for i, f in zip(idx, frames)]
            elif source.layout == VOLUME and n > 1:
                volume = _finite(_read(scan, range(n)))
                if volume.ndim == 4:
                    volume = volume.mean(axis=-1)
                views = list(_volume_slices(volume, spacing3, cap))
            else:
                idx = _spread(range(n), cap)
                views = [("native", i, f, spacing3[1:]) for i, f in zip(idx, _read(scan, idx))]
        for orientation, index, image, spacing in views:
            image = _finite(np.asarray(image, dtype=np.float32))
            if image.ndim == 3:
                image = np.moveaxis(image, -1, 0)  # (H, W, 3) -> (3, H, W), as the simulators use
            if min(image.shape[-2:]) < MIN_SIDE or float(image.std()) == 0.0:
                continue
            image, spacing = _downsample(image, spacing, 2 * max_side)
            out.append(CorpusSlice(image, spacing, sid, source.split_group, source.modality,
                                   source.anatomy, orientation, int(index)))
    report.n_slices = len(out)
    report.orientations = sorted({s.orientation for s in out})
    return out, report


def _regions(item: CorpusSlice) -> list[CorpusSlice]:
    """Four spatially disjoint regions of one image: a 2x2 grid, or bands if it is elongated."""
    h, w = item.image.shape[-2:]
    if max(h, w) > 2 * min(h, w):
        axis = -2 if h > w else -1
        size = item.image.shape[axis]
        bounds = [(k * size // 4, (k + 1) * size // 4) for k in range(4)]
        boxes = [((a, b), (0, w)) if axis == -2 else ((0, h), (a, b)) for a, b in bounds]
    else:
        boxes = [((r0, r1), (c0, c1)) for r0, r1 in ((0, h // 2), (h // 2, h))
                 for c0, c1 in ((0, w // 2), (w // 2, w))]
    parts = []
    for k, ((r0, r1), (c0, c1)) in enumerate(boxes):
        crop = np.ascontiguousarray(item.image[..., r0:r1, c0:c1])
        parts.append(CorpusSlice(crop, item.spacing, f"{item.source}#r{k}", f"{item.group}#r{k}",
                                 item.modality, item.anatomy, "region", k))
    return parts


def cut_single_image_modalities(slices: list[CorpusSlice]) -> tuple[list[CorpusSlice], list[str]]:
    """Cut the largest single 2D image of each modality with < 4 groups into four regions."""
    groups: dict[str, set[str]] = defaultdict(set)
    per_source: dict[str, list[CorpusSlice]] = defaultdict(list)
    for item in slices:
        groups[item.modality].add(item.group)
        per_source[item.source].append(item)
    cut: list[str] = []
    for modality, names in groups.items():
        if len(names) >= MIN_GROUPS:
            continue
        singles = [items[0] for items in per_source.values()
                   if len(items) == 1 and items[0].modality == modality]
        if not singles:
            continue
        largest = max(singles, key=lambda s: s.image.shape[-2] * s.image.shape[-1])
        slices = [s for s in slices if s is not largest] + _regions(largest)
        cut.append(largest.source)
    return slices, cut


def assign_splits(groups_by_modality: dict[str, Counter], seed: int) -> dict[str, str]:
    """Split source groups per modality, deterministic for the seed.

    ~20 % of a modality's groups go to test and ~15 % to val, at least one each (two groups: one
    test, one train; a lone group: train). Held-out groups are drawn in a seeded order among those
    holding at most 15 % of the modality's slices (smallest first if too few qualify), so a
    72-slice template is never the whole test set while 2D images make up the training set.
    """
    split: dict[str, str] = {}
    for modality in sorted(groups_by_modality):
        sizes = groups_by_modality[modality]
        names = sorted(sizes)
        random.Random(f"{seed}:{modality}").shuffle(names)
        n = len(names)
        n_test = 0 if n < 2 else max(1, round(0.2 * n))
        n_val = 0 if n < 3 else max(1, round(0.15 * n))
        total = sum(sizes.values())
        small = [g for g in names if sizes[g] <= 0.15 * total]
        rest = sorted((g for g in names if g not in small), key=lambda g: sizes[g])
        order = small + rest
        for k, name in enumerate(order):
            split[name] = "test" if k < n_test else "val" if k < n_test + n_val else "train"
    return split


# --------------------------------------------------------------------------- build


def _storage_dtype(item: CorpusSlice) -> str:
    """float32 for CT (HU needs 1-HU steps up to 3000+), float16 where its 11-bit mantissa
    (0.05 % steps, far below any image noise) and range suffice."""
    if item.modality == "CT" or float(np.abs(item.image).max()) > FLOAT16_MAX:
        return "float32"
    return "float16"


def build_corpus(out: str, max_side: int = 384, seed: int = 0, cap: int = 24,
                 limit_sources: int | None = None, sources: Sequence[str] | None = None,
                 extra: Sequence[Source] = (), log: Callable[[str], None] = print) -> dict:
    """Build the corpus in folder `out`; returns the summary (also written to summary.json).

    `sources` keeps only catalogue ids (or id prefixes such as "pydicom:CT_small"), and
    `limit_sources` the first N of those: small corpora for tests. `extra` (a site's own
    images, `sources.read_image_list`) joins whatever the catalogue keeps.
    """
    import h5py

    start = time.perf_counter()
    catalogue = [s for s in SOURCES
                 if sources is None or any(s.id == k or s.id.startswith(k) for k in sources)]
    if limit_sources is not None:
        catalogue = catalogue[:limit_sources]
    catalogue = [*catalogue, *extra]
    os.makedirs(out, exist_ok=True)
    slices: list[CorpusSlice] = []
    reports: list[SourceReport] = []
    with tempfile.TemporaryDirectory(prefix="mediqa-corpus-") as workdir:
        for source in catalogue:
            items, report = extract(source, workdir, max_side, cap)
            if not items:
                log(f"skipped {source.id}: {'; '.join(report.notes) or 'no usable slices'}")
            slices.extend(items)
            reports.append(report)
    slices, cut = cut_single_image_modalities(slices)
    groups: dict[str, Counter] = defaultdict(Counter)
    for item in slices:
        groups[item.modality][item.group] += 1
    split_of = assign_splits(groups, seed)
    for item in slices:
        item.split = split_of[item.group]
        item.image, item.spacing = _downsample(item.image, item.spacing, max_side)

    for stale in os.listdir(out):
        if stale.endswith(".h5") or stale in ("manifest.jsonl", "sources.jsonl", "summary.json"):
            os.remove(os.path.join(out, stale))
    rows = []
    for split in SPLITS:
        part = [s for s in slices if s.split == split]
        for k in range(0, len(part), SHARD_SLICES):
            shard = f"{split}-{k // SHARD_SLICES:03d}.h5"
            with h5py.File(os.path.join(out, shard), "w") as h5:
                for j, item in enumerate(part[k:k + SHARD_SLICES]):
                    name = f"s{k + j:06d}"
                    dtype = _storage_dtype(item)
                    ds = h5.create_dataset(name, data=item.image.astype(dtype), compression="gzip",
                                           compression_opts=4, shuffle=True)
                    meta = _row(item, shard, name, dtype)
                    for key in ("source", "modality", "anatomy", "orientation", "split"):
                        ds.attrs[key] = meta[key]
                    ds.attrs["spacing"] = np.asarray(item.spacing, dtype=np.float64)
                    rows.append(meta)
    with open(os.path.join(out, "manifest.jsonl"), "w") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in rows)
    by_group = {r.group: r for r in reports}
    source_rows = []
    for item_source in sorted({s.source for s in slices}):
        members = [s for s in slices if s.source == item_source]
        base = by_group.get(members[0].group.split("#")[0])
        source_rows.append({
            "source": item_source, "group": members[0].group, "modality": members[0].modality,
            "anatomy": members[0].anatomy, "split": members[0].split, "n_slices": len(members),
            "orientations": sorted({m.orientation for m in members}),
            "paths": base.paths if base else [], "notes": base.notes if base else [],
        })
    with open(os.path.join(out, "sources.jsonl"), "w") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in source_rows)
    summary = _summary(slices, reports, cut, seed, max_side, time.perf_counter() - start, out)
    with open(os.path.join(out, "summary.json"), "w") as handle:
        json.dump(summary, handle, indent=1)
    return summary


def _row(item: CorpusSlice, shard: str, name: str, dtype: str) -> dict:
    return {
        "key": f"{item.source}|{item.orientation}|{item.index}", "shard": shard, "dataset": name,
        "source": item.source, "group": item.group, "modality": item.modality,
        "anatomy": item.anatomy, "split": item.split, "orientation": item.orientation,
        "index": item.index, "shape": list(item.image.shape),
        "spacing": [None if not math.isfinite(v) else round(v, 6) for v in item.spacing],
        "dtype": dtype,
    }


def _summary(slices: list[CorpusSlice], reports: list[SourceReport], cut: list[str], seed: int,
             max_side: int, seconds: float, out: str) -> dict:
    counts: dict[str, Counter] = defaultdict(Counter)
    sources: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    for item in slices:
        counts[item.modality][item.split] += 1
        sources[item.modality][item.split].add(item.group)
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    return {
        "seed": seed, "max_side": max_side, "seconds": round(seconds, 1), "bytes": size,
        "n_slices": len(slices),
        "slices": {m: dict(c) for m, c in sorted(counts.items())},
        "groups": {m: {k: len(v) for k, v in d.items()} for m, d in sorted(sources.items())},
        "regions_cut_from": cut,
        "skipped": {r.id: r.notes for r in reports if not r.n_slices},
    }


def summary_table(summary: dict):  # noqa: ANN201 - rich.table.Table (rich imported lazily)
    """Slices per modality x split, and source groups per split ("train/val/test")."""
    from rich.table import Table

    table = Table(title=f"corpus: {summary['n_slices']} slices, seed {summary['seed']}, "
                        f"max side {summary['max_side']}")
    table.add_column("modality")
    for split in SPLITS:
        table.add_column(f"{split} slices", justify="right")
    table.add_column("slices", justify="right")
    table.add_column("sources train/val/test", justify="right")
    totals = Counter()
    for modality, counts in summary["slices"].items():
        groups = summary["groups"][modality]
        table.add_row(modality, *(str(counts.get(s, 0)) for s in SPLITS),
                      str(sum(counts.values())), "/".join(str(groups.get(s, 0)) for s in SPLITS))
        totals.update(counts)
    table.add_row("all", *(str(totals.get(s, 0)) for s in SPLITS), str(sum(totals.values())), "",
                  end_section=True)
    return table


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class CorpusItem:
    """One slice for training: float32 (H, W) or (3, H, W) in physical units."""

    image: torch.Tensor
    spacing: tuple[float, float]
    modality: str
    anatomy: str
    split: str
    source: str
    orientation: str
    key: str


class CorpusDataset(Sequence[CorpusItem]):
    """The corpus (or some splits/modalities of it) held in memory as float32 tensors.

    Map-style (works with `torch.utils.data.DataLoader`) and with `sample`, which balances
    modalities then sources, because slice counts differ by 100x between them.
    """

    def __init__(self, items: list[CorpusItem]) -> None:
        self.items = items
        self._by_modality: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for i, item in enumerate(items):
            self._by_modality[item.modality][item.source].append(i)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> CorpusItem:  # type: ignore[override]
        return self.items[index]

    @property
    def modalities(self) -> list[str]:
        return sorted(self._by_modality)

    def sample(self, rng: torch.Generator, balance: bool = True) -> CorpusItem:
        """A random slice: modality, then source, then slice uniform (or slice uniform)."""
        def pick(n: int) -> int:
            return int(torch.randint(n, (), generator=rng))

        if not balance:
            return self.items[pick(len(self.items))]
        by_source = self._by_modality[self.modalities[pick(len(self.modalities))]]
        indices = by_source[sorted(by_source)[pick(len(by_source))]]
        return self.items[indices[pick(len(indices))]]


def open_corpus(path: str, split: str | Sequence[str] | None = None,
                modalities: Sequence[str] | None = None) -> CorpusDataset:
    """Load the corpus at `path` (a folder from `build_corpus`) into memory."""
    import h5py

    splits = {split} if isinstance(split, str) else set(split) if split else set(SPLITS)
    with open(os.path.join(path, "manifest.jsonl")) as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    rows = [r for r in rows if r["split"] in splits
            and (modalities is None or r["modality"] in modalities)]
    items: list[CorpusItem] = []
    by_shard: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_shard[row["shard"]].append(row)
    for shard, shard_rows in sorted(by_shard.items()):
        with h5py.File(os.path.join(path, shard), "r") as h5:
            for row in shard_rows:
                image = torch.from_numpy(h5[row["dataset"]][()].astype(np.float32))
                spacing = tuple(math.nan if v is None else float(v) for v in row["spacing"])
                items.append(CorpusItem(image, spacing, row["modality"], row["anatomy"],  # type: ignore[arg-type]
                                        row["split"], row["source"], row["orientation"],
                                        row["key"]))
    return CorpusDataset(items)
