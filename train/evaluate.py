"""The measuring stick: does a weights folder rank quality better than the classical measures,
on real images from many patients, with degradations drawn by code the model never trained on?

What it does, and why each piece is there:

- **Images**: one original-pixel image per patient group of the source manifest (the manifest's
  `ground_truth=yes` rows; resized or recompressed images would bring their own artefacts),
  groups taken in the order of a hash of their name, at most `groups_per_modality` each.
- **Ladders** (`mediqa_train.eval_ladders`): the clean image and five levels of each family its
  modality has, by TorchIO, scikit-image, scipy and Pillow.
- **Scores** through the product's own path (`mediqa_cli.engine.run` on in-memory scans: the
  same slice preparation, saliency and IQMs as `mediqa score`), next to the rivals BRISQUE, PIQE,
  NIQE (`mediqa_train.rivals`) and the report's `iqm_*` columns.
- **Two figures**: within-ladder SRCC (does the score fall as the fault grows?) per family and
  modality, and cross-image AUC per modality (is a clean scan scored above another patient's
  scan at level 3 or worse? an audit compares different scans, never one scan's copies).
- **Folds and intervals**: a group's fold is fixed by its name (`manifest.fold_of`). Weights
  that trained on manifest images come as a folder of `fold0`..`fold4` weights, each scoring only
  the groups it never saw, pooled so every group is tested once; weights that never saw the
  manifest (v0.4.0) score every group. Intervals are 95% bootstrap intervals over groups; with
  `--compare`, the paired difference of the two weight sets on the same resampled groups.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from mediqa_train.eval_ladders import FAMILIES, LEVELS, Family, ladder
from mediqa_train.ladders import ladder_srcc
from mediqa_train.manifest import FOLDS, Entry, fetch_entry, fold_of

IQM_HIGHER_IS_BETTER = {"iqm_snr": True, "iqm_cnr": True, "iqm_efc": False, "iqm_fber": True,
                        "iqm_sharpness": True, "iqm_noise_sigma": False}
AUC_FROM_LEVEL = 3  # cross-image AUC: clean vs this level and above
BOOTSTRAP = 1000


@dataclass
class EvalImage:
    """One clean evaluation image (a slice in the reader's layout and units)."""

    source_id: str
    group: str
    modality: str
    anatomy: str
    pixels: np.ndarray
    spacing: tuple[float, float]

    @property
    def fold(self) -> int:
        return fold_of(self.group)


@dataclass
class LadderResult:
    """Every method's value on one ladder's six images (clean first), higher = better."""

    modality: str
    family: str
    group: str
    values: dict[str, list[float]] = field(default_factory=dict)


def _hash_order(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def pick_images(entries: Sequence[Entry], groups_per_modality: int,
                modalities: Sequence[str] | None = None) -> list[Entry]:
    """One file per group, up to `groups_per_modality` groups per modality.

    Groups with an original-pixel file (`ground_truth`) come first and give that file; a
    modality without enough of them (no public radiograph or ultrasound here is at its acquired
    size) fills up with resized/recompressed ones, and the table says how many.
    """
    by_group: dict[tuple[str, str], list[Entry]] = defaultdict(list)
    for entry in entries:
        if entry.modality in FAMILIES and (not modalities or entry.modality in modalities):
            by_group[(entry.modality, entry.group)].append(entry)

    def preference(entry: Entry) -> tuple[bool, str]:
        return (not entry.ground_truth, entry.sha256)

    chosen: list[Entry] = []
    for modality in sorted({m for m, _ in by_group}):
        best = {g: min(by_group[(m, g)], key=preference) for m, g in by_group if m == modality}
        groups = sorted(best, key=lambda g: (not best[g].ground_truth, _hash_order(g)))
        chosen.extend(best[g] for g in groups[:groups_per_modality])
    return chosen


def load_image(entry: Entry, cache: Path, mirror: Path | None) -> EvalImage:
    """The entry's middle slice (first frame of a cine) through the product's readers."""
    from mediqa_cli.io import Scan, discover

    path = fetch_entry(entry, cache, mirror)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = [item for item in discover([str(path)]) if isinstance(item, Scan)]
    if not found:
        raise ValueError(f"{entry.source_id}: the readers found no image")
    scan = found[0]
    index = scan.n_slices // 2 if entry.layout == "volume" else 0
    pixels = np.asarray(scan.read_slice(index), dtype=np.float32)
    if not np.isfinite(pixels).all() or float(pixels.max() - pixels.min()) <= 0:
        raise ValueError(f"{entry.source_id}: empty or non-finite slice")
    return EvalImage(entry.source_id, entry.group, entry.modality, entry.anatomy, pixels,
                     (float(scan.spacing[1]), float(scan.spacing[2])))


def _memory_scan(image: np.ndarray, name: str, spacing: tuple[float, float], modality: str,
                 anatomy: str):  # noqa: ANN202 - mediqa_cli.io.Scan
    from mediqa_cli.io.scan import SOURCE_OVERRIDE, Scan

    return Scan(scan_id=hashlib.sha256(name.encode()).hexdigest()[:16], paths=(name,),
                kind="raster", shape=(1, image.shape[0], image.shape[1]),
                spacing=(math.nan, *spacing), read_slice=lambda _i: image,
                channels=3 if image.ndim == 3 else 1, modality=modality,
                modality_source=SOURCE_OVERRIDE, anatomy=anatomy, anatomy_source=SOURCE_OVERRIDE)


class WeightSet:
    """A weights folder, or a folder of per-fold weights (`fold0` ... `fold4`)."""

    def __init__(self, name: str, folder: Path, device: str = "cpu",
                 member: int | None = None, physics_head: bool = True) -> None:
        """`member` scores one network of an ensemble alone (two seeds of one recipe are two
        members of the shipped ensemble); `physics_head` False, the network without its token
        reader (`mediqa_cli.physics_head`), which the reader is fitted beside."""
        from mediqa_cli.scoring import load_scorer

        def load(path: Path):  # noqa: ANN202 - ModelScorer
            # fp32, not the CPU's `auto`: the stick's stored JSONs were scored in fp32, and a
            # paired comparison with them must use the same arithmetic on every machine.
            scorer = load_scorer(path, device, calibrated=False,  # the scale is fitted on this
                                 precision="fp32", physics_head=physics_head)
            if member is not None:
                from mediqa_cli.model.ensemble import members_of

                networks = members_of(scorer.model)
                if not 0 <= member < len(networks):
                    raise ValueError(f"{path}: member {member} of {len(networks)}")
                scorer.model = networks[member]
                scorer.version = f"{scorer.version}#member{member}"
            return scorer

        self.name = name
        per_fold = [folder / f"fold{k}" for k in range(FOLDS)]
        if all((p / "model.safetensors").is_file() for p in per_fold):
            self.scorers = {k: load(p) for k, p in enumerate(per_fold)}
        elif (folder / "model.safetensors").is_file():
            one = load(folder)
            self.scorers = {k: one for k in range(FOLDS)}
        else:
            raise FileNotFoundError(f"{folder}: no model.safetensors, nor fold0..fold{FOLDS - 1}")
        self.version = ",".join(sorted({s.version for s in self.scorers.values()}))

    def score(self, images: Sequence[np.ndarray], base: EvalImage, tag: str
              ) -> list[dict[str, Any]]:
        """Report rows of images that share `base`'s metadata, through `mediqa_cli.engine.run`
        (score and the `iqm_*` columns)."""
        from mediqa_cli.engine import EngineOptions, run

        scans = [_memory_scan(im, f"{tag}/{i}", base.spacing, base.modality, base.anatomy)
                 for i, im in enumerate(images)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return list(run(scans, EngineOptions(workers=0), self.scorers[base.fold]))


def _score_of(row: Any) -> float:
    """The row's score (a report row or a result: both answer `.get`), NaN when not scored; a
    result's unrounded score where it has one (rankings near the top of the raw scale tie at
    the report's two decimals)."""
    score = getattr(row, "exact_score", None)
    score = row.get("score") if score is None else score
    return float(score) if row.get("status") == "ok" and score not in (None, "") else math.nan


def iqm_values(rows: Sequence[dict[str, Any]]) -> dict[str, list[float]]:
    """The report's IQM columns, oriented so that higher is better."""
    out: dict[str, list[float]] = {}
    for name, higher in IQM_HIGHER_IS_BETTER.items():
        values = [math.nan if r.get(name) in (None, "") else float(r.get(name)) for r in rows]
        out[name] = [v if higher else -v for v in values]
    return out


def rival_values(images: Sequence[np.ndarray], base: EvalImage,
                 clean: dict[str, float] | None = None) -> dict[str, list[float]]:
    """BRISQUE, PIQE and NIQE on each image, oriented so that higher is better; `clean` gives
    the values of images[0] when they are known (every family of an image shares it)."""
    from mediqa_train.rivals import score_all

    out: dict[str, list[float]] = defaultdict(list)
    for k, image in enumerate(images):
        values = clean if k == 0 and clean is not None else score_all(image, base.modality)
        for name, value in values.items():
            out[name].append(value)
    return dict(out)


def ladder_key(seed: int, image: EvalImage, family: Family) -> str:
    """One ladder's name in the journal; its random draws are seeded from it."""
    return f"{seed}|{image.source_id}|{family.name}"


def ladder_steps(image: EvalImage, family: Family, key: str) -> list[np.ndarray]:
    """The clean image and its five degraded steps, drawn as `key` seeds them: the one place
    the stick's draws are made, so a benchmark that rebuilds a ladder gets evaluate's."""
    return ladder(image.pixels, image.spacing, family, int(_hash_order(key)[:8], 16))


def run_ladders(images: Sequence[EvalImage], weight_sets: Sequence[WeightSet], seed: int = 0,
                families: dict[str, tuple[Family, ...]] = FAMILIES, rivals: bool = True,
                journal: Path | None = None,
                log: Callable[[str], None] = print) -> Iterator[LadderResult]:
    """Every family's ladder of every image, scored by every method.

    With a `journal` (JSON lines), each finished ladder is appended as it is done, and ladders
    already in it are read back instead of scored again: a killed run resumes.
    """
    started = time.perf_counter()
    total = sum(len(families.get(im.modality, ())) for im in images)
    done_before = _read_journal(journal)
    done = 0
    for image in images:
        clean_rivals: dict[str, float] | None = None
        for family in families.get(image.modality, ()):
            key = ladder_key(seed, image, family)
            done += 1
            if key in done_before:
                yield done_before[key]
                continue
            steps = ladder_steps(image, family, key)
            result = LadderResult(image.modality, family.name, image.group)
            tag = f"{image.source_id}/{family.name}"
            for k, weights in enumerate(weight_sets):
                rows = weights.score(steps, image, tag)
                result.values[weights.name] = [_score_of(r) for r in rows]
                if rivals and k == 0:
                    result.values.update(iqm_values(rows))
            if rivals:
                result.values.update(rival_values(steps, image, clean_rivals))
                clean_rivals = {k: v[0] for k, v in result.values.items()
                                if k in ("brisque", "piqe", "niqe")}
            if journal is not None:
                with open(journal, "a") as handle:
                    handle.write(json.dumps({"key": key, **to_jsonable([result])[0]}) + "\n")
            if done % 10 == 0 or done == total:
                log(f"{done}/{total} ladders, {time.perf_counter() - started:.0f} s")
            yield result


def _read_journal(journal: Path | None) -> dict[str, LadderResult]:
    if journal is None or not journal.is_file():
        return {}
    out: dict[str, LadderResult] = {}
    for line in journal.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill
        out[row["key"]] = from_jsonable([row])[0]
    return out


# --- statistics ---------------------------------------------------------------------------


@dataclass
class Table:
    """Per-ladder SRCCs and per-group AUC counts, with a bootstrap over groups."""

    results: list[LadderResult]
    methods: list[str]
    _cache: dict = field(default_factory=dict, repr=False)

    def modalities(self) -> list[str]:
        return sorted({r.modality for r in self.results})

    def families(self, modality: str) -> list[str]:
        key = ("families", modality)
        if key not in self._cache:  # asked for in every bootstrap draw: computed once
            self._cache[key] = [f.name for f in FAMILIES[modality] if any(
                r.family == f.name and r.modality == modality for r in self.results)]
        return self._cache[key]

    def groups(self, modality: str) -> list[str]:
        key = ("groups", modality)
        if key not in self._cache:
            self._cache[key] = sorted({r.group for r in self.results if r.modality == modality})
        return self._cache[key]

    def _srcc_arrays(self, modality: str, family: str) -> tuple[np.ndarray, np.ndarray]:
        """(group index per ladder, ladders x methods SRCC), computed once per family."""
        key = (modality, family)
        if key not in self._cache:
            index = {g: k for k, g in enumerate(self.groups(modality))}
            rows = [r for r in self.results if r.modality == modality and r.family == family]
            groups = np.array([index[r.group] for r in rows], dtype=int)
            values = np.array([[ladder_srcc(r.values[m]) if m in r.values else math.nan
                                for m in self.methods] for r in rows],
                              dtype=float).reshape(len(rows), len(self.methods))
            self._cache[key] = (groups, values)
        return self._cache[key]

    def srcc(self, modality: str, weights: np.ndarray | None = None
             ) -> dict[str, dict[str, float]]:
        """method -> family -> mean SRCC (weighted by group multiplicities), plus "mean"."""
        n = len(self.groups(modality))
        w_group = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
        per: dict[str, dict[str, float]] = {m: {} for m in self.methods}
        for family in self.families(modality):
            groups, values = self._srcc_arrays(modality, family)
            w = w_group[groups][:, None] * np.isfinite(values)
            total = w.sum(axis=0)
            means = np.where(total > 0, (w * np.nan_to_num(values)).sum(axis=0)
                             / np.maximum(total, 1e-12), np.nan)
            for k, method in enumerate(self.methods):
                per[method][family] = float(means[k])
        for method in self.methods:
            finite = [v for v in per[method].values() if math.isfinite(v)]
            per[method]["mean"] = float(np.mean(finite)) if finite else math.nan
        return per

    def _auc_counts(self, modality: str, method: str) -> tuple[np.ndarray, np.ndarray]:
        """M[i, j]: clean of group i above degraded images of group j (ties half); N[j]: count."""
        groups = self.groups(modality)
        index = {g: k for k, g in enumerate(groups)}
        clean: dict[int, list[float]] = defaultdict(list)
        degraded: dict[int, list[float]] = defaultdict(list)
        for r in self.results:
            if r.modality != modality:
                continue
            if method not in r.values:  # that method did not score this ladder
                continue
            values = r.values[method]
            k = index[r.group]
            if math.isfinite(values[0]):
                clean[k].append(values[0])
            degraded[k].extend(v for v in values[AUC_FROM_LEVEL:] if math.isfinite(v))
        n = len(groups)
        counts = np.zeros((n, n))
        sizes = np.zeros(n)
        for j in range(n):
            d = np.asarray(degraded[j])
            sizes[j] = len(d)
            for i in range(n):
                c = np.asarray(clean[i][:1])  # one clean image per group (families share it)
                if len(c) and len(d):
                    counts[i, j] = float((c[:, None] > d).sum() + 0.5 * (c[:, None] == d).sum())
                elif not len(c):
                    counts[i, j] = math.nan
        return counts, sizes

    def auc(self, modality: str, method: str, weights: np.ndarray | None = None) -> float:
        key = ("auc", modality, method)
        if key not in self._cache:
            self._cache[key] = self._auc_counts(modality, method)
        counts, sizes = self._cache[key]
        return _weighted_auc(counts, sizes, weights)

    def auc_by_family(self, modality: str, method: str) -> dict[str, float]:
        """The cross-image AUC with one family's degraded images only (the clean image of each
        group that has that family's ladder against the other such groups' steps): where the
        AUC is lost."""
        out = {}
        for family in self.families(modality):
            part = [r for r in self.results if r.modality == modality and r.family == family]
            out[family] = Table(part, self.methods).auc(modality, method)
        return out

    def bootstrap(self, modality: str, statistic: Callable[[np.ndarray], float],
                  seed: int = 0, n: int = BOOTSTRAP) -> tuple[float, float]:
        """95% percentile interval of `statistic(group weights)` over group resamples."""
        return self.bootstrap_each(modality, lambda w: [statistic(w)], seed, n)[0]

    def bootstrap_each(self, modality: str,
                       statistics: Callable[[np.ndarray], Sequence[float]],
                       seed: int = 0, n: int = BOOTSTRAP) -> list[tuple[float, float]]:
        """`bootstrap` for several statistics computed from the same resamples in one pass
        (e.g. every family's difference from one `srcc` call per draw)."""
        rng = np.random.default_rng(seed)
        k = len(self.groups(modality))
        values = []
        for _ in range(n):
            weights = np.bincount(rng.integers(0, k, k), minlength=k).astype(float)
            values.append(statistics(weights))
        intervals = []
        for column in np.asarray(values, dtype=float).reshape(n, -1).T:
            finite = column[np.isfinite(column)]
            intervals.append((float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5)))
                             if len(finite) else (math.nan, math.nan))
        return intervals


def _weighted_auc(counts: np.ndarray, sizes: np.ndarray, weights: np.ndarray | None) -> float:
    """AUC over pairs of different groups, each group counted `weights` times."""
    n = len(sizes)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    valid = np.isfinite(counts).all(axis=1)
    w = np.where(valid, w, 0.0)
    c = np.nan_to_num(counts)
    pairs = np.outer(w, w)
    np.fill_diagonal(pairs, 0.0)
    denominator = float((pairs * sizes[None, :]).sum())
    return float((pairs * c).sum() / denominator) if denominator else math.nan


def summarise(table: Table, reference: str, compare: str | Sequence[str] | None = None,
              seed: int = 0, n_boot: int = BOOTSTRAP) -> dict[str, Any]:
    """Point values and intervals per modality (and family), and the paired difference.

    `compare` may name several methods (seeds of one recipe): the paired difference is then the
    reference minus their mean, so a candidate is judged against the recipe rather than against
    one seed's draw."""
    compares = [] if compare is None else [compare] if isinstance(compare, str) else list(compare)
    out: dict[str, Any] = {"modalities": {}, "methods": table.methods, "reference": reference}
    if len(compares) > 1:
        out["compared_with_mean_of"] = compares

    def versus_families(mod: str, w: np.ndarray | None, families: Sequence[str]
                        ) -> list[float]:
        per = table.srcc(mod, w)
        return [per[reference][f] - float(np.mean([per[c][f] for c in compares]))
                for f in families]

    def versus_auc(mod: str, w: np.ndarray | None) -> float:
        return table.auc(mod, reference, w) - float(np.mean([table.auc(mod, c, w)
                                                             for c in compares]))

    for modality in table.modalities():
        srcc = table.srcc(modality)
        entry: dict[str, Any] = {
            "groups": len(table.groups(modality)),
            "ladders": sum(r.modality == modality for r in table.results),
            "families": table.families(modality),
            "srcc": srcc,
            "auc": {m: table.auc(modality, m) for m in table.methods},
            "auc_by_family": {m: table.auc_by_family(modality, m)
                              for m in (reference, *compares)},
        }
        for method in (reference, *compares):
            entry.setdefault("srcc_ci", {})[method] = table.bootstrap(
                modality, lambda w, m=method, mod=modality: table.srcc(mod, w)[m]["mean"],
                seed, n_boot)
            entry.setdefault("auc_ci", {})[method] = table.bootstrap(
                modality, lambda w, m=method, mod=modality: table.auc(mod, m, w), seed, n_boot)
        if compares:
            # The mean's interval and each family's (where a change is: one family can carry
            # it) from one pass of the same resamples: one `srcc` call per draw.
            families = table.families(modality)
            *per_family, entry["paired_srcc"] = table.bootstrap_each(
                modality, lambda w, mod=modality, fs=(*families, "mean"):
                versus_families(mod, w, fs), seed, n_boot)
            entry["paired_auc"] = table.bootstrap(
                modality, lambda w, mod=modality: versus_auc(mod, w), seed, n_boot)
            entry["paired_family_srcc"] = dict(zip(families, per_family, strict=True))
        best = max((m for m in table.methods if m not in (reference, *compares)),
                   key=lambda m: _nan_low(srcc[m]["mean"]), default=None)
        entry["best_classical"] = best
        out["modalities"][modality] = entry
    out["pooled"] = _pooled(table, reference, compares, seed, n_boot)
    return out


def _nan_low(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


def _pooled(table: Table, reference: str, compares: Sequence[str], seed: int,
            n_boot: int) -> dict[str, Any]:
    """The mean over modalities of the modality-mean SRCC, groups resampled within modality;
    the difference is the reference minus the mean of `compares`."""
    modalities = table.modalities()
    rng = np.random.default_rng(seed)

    def draw() -> dict[str, np.ndarray]:
        return {m: np.bincount(rng.integers(0, len(table.groups(m)), len(table.groups(m))),
                               minlength=len(table.groups(m))).astype(float)
                for m in modalities}

    def value(method: str, weights: dict[str, np.ndarray] | None) -> float:
        vals = [table.srcc(m, None if weights is None else weights[m])[method]["mean"]
                for m in modalities]
        finite = [v for v in vals if math.isfinite(v)]
        return float(np.mean(finite)) if finite else math.nan

    methods = [reference, *compares]
    point = {m: value(m, None) for m in table.methods}
    samples: dict[str, list[float]] = defaultdict(list)
    for _ in range(n_boot):
        weights = draw()
        values = {m: value(m, weights) for m in methods}
        for m in methods:
            samples[m].append(values[m])
        if compares:
            samples["difference"].append(
                values[reference] - float(np.mean([values[c] for c in compares])))
    return {"srcc": point, **{f"ci_{k}": (float(np.percentile(v, 2.5)),
                                          float(np.percentile(v, 97.5)))
                              for k, v in samples.items()}}


def to_jsonable(results: Sequence[LadderResult]) -> list[dict[str, Any]]:
    return [{"modality": r.modality, "family": r.family, "group": r.group,
             "values": {k: [None if not math.isfinite(x) else round(x, 6) for x in v]
                        for k, v in r.values.items()}} for r in results]


def from_jsonable(rows: Sequence[dict[str, Any]]) -> list[LadderResult]:
    return [LadderResult(r["modality"], r["family"], r["group"],
                         {k: [math.nan if x is None else float(x) for x in v]
                          for k, v in r["values"].items()}) for r in rows]


def _matched(results: Sequence[LadderResult], earlier: Sequence[LadderResult]
             ) -> Iterator[tuple[LadderResult, dict[str, list[float]]]]:
    """Each result with the earlier run's values of the same ladder (same manifest, fold,
    groups and seed draw the same ladders); ladders the earlier run lacks, or holds no model
    score for, are skipped."""
    by_key = {(r.modality, r.family, r.group): r.values for r in earlier}
    for r in results:
        old = by_key.get((r.modality, r.family, r.group))
        if old is not None and "model" in old:
            yield r, old


def add_compare(results: Sequence[LadderResult], earlier: Sequence[LadderResult],
                name: str) -> list[LadderResult]:
    """`results` with another earlier run's model scores as column `name` (a further seed of
    the compared recipe); ladders that run lacks are dropped, as in `pair_with`."""
    return [LadderResult(r.modality, r.family, r.group, {**r.values, name: old["model"]})
            for r, old in _matched(results, earlier)]


def common_columns(results: Sequence[LadderResult]
                   ) -> tuple[list[LadderResult], dict[str, list[str]]]:
    """Each modality's ladders with only the columns all of them have, and what was dropped
    (modality -> columns). Why: reads pooled from several runs (a `--no-rivals` fold beside one
    with rivals) would otherwise compare a rival over some patients with the model over all."""
    by_modality: dict[str, set[str]] = {}
    for r in results:
        keys = set(r.values)
        by_modality[r.modality] = by_modality.get(r.modality, keys) & keys
    dropped = {m: sorted({k for r in results if r.modality == m for k in r.values} - kept)
               for m, kept in by_modality.items()}
    kept_rows = [LadderResult(r.modality, r.family, r.group,
                              {k: v for k, v in r.values.items() if k in by_modality[r.modality]})
                 for r in results]
    return kept_rows, {m: d for m, d in dropped.items() if d}


def pair_with(results: Sequence[LadderResult], earlier: Sequence[LadderResult]
              ) -> list[LadderResult]:
    """`results` with an earlier run's model scores as "compare", ladder by ladder (unmatched
    ones are dropped); each keeps its own rival columns and takes the earlier run's where it
    has none (a `--no-rivals` read pooled with reads that have them). Why: a model whose
    preprocessing code changed cannot be rescored beside the old one in one process, but its
    old scores on the same ladders pair as well."""
    paired = []
    for r, old in _matched(results, earlier):
        own = {k: v for k, v in r.values.items() if k not in ("model", "compare")}
        extra = {k: v for k, v in old.items() if k not in ("model", "compare", *own)}
        values = {"model": r.values["model"], "compare": old["model"], **own, **extra}
        paired.append(LadderResult(r.modality, r.family, r.group, values))
    return paired


def save(path: Path, results: Sequence[LadderResult], summary: dict[str, Any],
         meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        json.dump({"meta": meta, "summary": summary, "ladders": to_jsonable(results)}, handle,
                  indent=None, default=float)
        handle.write("\n")


LEVEL_COUNT = LEVELS + 1  # clean + levels, the length of every ladder's values
