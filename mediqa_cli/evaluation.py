"""Agreement between predicted scores and reference labels: SRCC, PLCC, KRCC, RMSE with CIs.

The usual image-quality-assessment protocol (VQEG, "Final report on the validation of objective
models of video quality assessment", 2000/2003), as the MedIQA paper reports it:

- SRCC: Spearman rank correlation (monotonicity; ties get average ranks).
- KRCC: Kendall's tau-b (pairwise order agreement, ties corrected).
- PLCC: Pearson correlation between the labels and the predictions after a monotone
  4-parameter logistic mapping f(x) = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2 fitted by
  least squares, so a score on another scale (0..100 vs a 1..5 rating) is not penalised for
  its scale, only for its non-monotone scatter; negative when the best map is decreasing.
- RMSE: root mean squared error of that same mapped prediction, in the label's units.

Confidence intervals: percentile bootstrap over items (resampled with replacement, the logistic
refitted on every resample), seeded, so a report can be reproduced number for number.
Pure numpy: `mediqa eval` runs where only the product is installed (no scipy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

METRICS: tuple[str, ...] = ("srcc", "plcc", "krcc", "rmse")
HIGHER_IS_BETTER = {"srcc": True, "plcc": True, "krcc": True, "rmse": False}
_KENDALL_BLOCK = 1024


def _clean(pred: Sequence[float] | np.ndarray, label: Sequence[float] | np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """float64 arrays of equal length with pairs holding a NaN/inf dropped."""
    x = np.asarray(pred, dtype=np.float64).reshape(-1)
    y = np.asarray(label, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"{x.size} predictions but {y.size} labels")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as scipy.stats.rankdata 'average')."""
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(v, kind="mergesort")
    sorted_v = v[order]
    # Start of each run of equal values, and the average rank of the run.
    starts = np.r_[True, sorted_v[1:] != sorted_v[:-1]]
    run_id = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    counts = np.diff(np.r_[first, v.size])
    avg = first + (counts + 1) / 2.0
    ranks = np.empty(v.size, dtype=np.float64)
    ranks[order] = avg[run_id]
    return ranks


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant or fewer than 2 items."""
    if x.size < 2:
        return math.nan
    xc, yc = x - x.mean(), y - y.mean()
    den = math.sqrt(float(xc @ xc) * float(yc @ yc))
    return float(xc @ yc) / den if den > 0 else math.nan


def srcc(pred: Sequence[float] | np.ndarray, label: Sequence[float] | np.ndarray) -> float:
    """Spearman rank correlation coefficient in [-1, 1] (NaN when undefined)."""
    x, y = _clean(pred, label)
    return pearson(rankdata(x), rankdata(y)) if x.size >= 2 else math.nan


def krcc(pred: Sequence[float] | np.ndarray, label: Sequence[float] | np.ndarray) -> float:
    """Kendall's tau-b in [-1, 1]: (concordant - discordant) / sqrt((n0 - tx)(n0 - ty)).

    Exact O(n^2) pair counting in row blocks (memory O(block * n)).
    """
    x, y = _clean(pred, label)
    n = x.size
    if n < 2:
        return math.nan
    s = 0.0
    tied_x = tied_y = 0.0
    for lo in range(0, n, _KENDALL_BLOCK):
        hi = min(n, lo + _KENDALL_BLOCK)
        dx = np.sign(x[lo:hi, None] - x[None, :])
        dy = np.sign(y[lo:hi, None] - y[None, :])
        # Every unordered pair is seen twice (i, j) and (j, i), the diagonal adds zeros.
        s += float((dx * dy).sum())
        tied_x += float((dx == 0).sum())
        tied_y += float((dy == 0).sum())
    pairs = n * (n - 1)
    tx, ty = tied_x - n, tied_y - n  # drop the diagonal
    den = math.sqrt((pairs - tx) * (pairs - ty))
    return s / den if den > 0 else math.nan


def logistic4(x: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2: monotone in x, from b2 up to b1."""
    z = np.clip(-(x - b[2]) / max(abs(b[3]), 1e-12), -60.0, 60.0)
    return (b[0] - b[1]) / (1.0 + np.exp(z)) + b[1]


def fit_logistic4(pred: np.ndarray, label: np.ndarray, iterations: int = 200) -> np.ndarray:
    """Least-squares fit of `logistic4` (Levenberg-Marquardt), started as in VQEG practice
    (b1 = max(label), b2 = min(label), b3 = mean(pred), b4 = std(pred)) and also from the
    decreasing start (b1 and b2 swapped); the better fit wins, so a negatively related predictor
    is not left in a poor local optimum."""
    x = np.asarray(pred, dtype=np.float64)
    y = np.asarray(label, dtype=np.float64)
    fits = [_fit_from(x, y, np.array([hi, lo, x.mean(), max(x.std(), 1e-6)]), iterations)
            for hi, lo in ((y.max(), y.min()), (y.min(), y.max()))]
    return min(fits, key=lambda b: float(((logistic4(x, b) - y) ** 2).sum()))


def _fit_from(x: np.ndarray, y: np.ndarray, b: np.ndarray, iterations: int) -> np.ndarray:
    b = b.astype(np.float64)
    lam = 1e-2
    cost = float(((logistic4(x, b) - y) ** 2).sum())
    for _ in range(iterations):
        s = max(abs(b[3]), 1e-12)
        sig = 1.0 / (1.0 + np.exp(np.clip(-(x - b[2]) / s, -60.0, 60.0)))
        dsig = sig * (1.0 - sig)
        jac = np.stack([sig, 1.0 - sig, -(b[0] - b[1]) * dsig / s,
                        -(b[0] - b[1]) * dsig * (x - b[2]) / (s * s) * np.sign(b[3] or 1.0)],
                       axis=1)
        r = logistic4(x, b) - y
        jtj = jac.T @ jac
        g = jac.T @ r
        improved = False
        for _ in range(10):
            try:
                step = np.linalg.solve(jtj + lam * np.diag(np.diag(jtj) + 1e-12), -g)
            except np.linalg.LinAlgError:
                lam *= 10.0
                continue
            cand = b + step
            new_cost = float(((logistic4(x, cand) - y) ** 2).sum())
            if np.isfinite(new_cost) and new_cost < cost:
                b, lam, improved = cand, max(lam / 3.0, 1e-9), True
                rel = (cost - new_cost) / max(cost, 1e-300)
                cost = new_cost
                break
            lam *= 10.0
        if not improved or rel < 1e-10:
            break
    return b


def mapped(pred: Sequence[float] | np.ndarray, label: Sequence[float] | np.ndarray
           ) -> np.ndarray:
    """The predictions after the fitted 4-parameter logistic, on the label's scale."""
    x, y = _clean(pred, label)
    return logistic4(x, fit_logistic4(x, y))


def plcc(pred: Sequence[float] | np.ndarray, label: Sequence[float] | np.ndarray) -> float:
    """Pearson correlation of the labels with the logistic-mapped predictions, signed by the
    direction of the fitted map: a predictor that runs the wrong way gets a negative PLCC
    instead of being rescued by a decreasing logistic."""
    x, y = _clean(pred, label)
    if x.size < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    b = fit_logistic4(x, y)
    return float(np.sign(b[0] - b[1]) or 1.0) * pearson(logistic4(x, b), y)


def rmse(pred: Sequence[float] | np.ndarray, label: Sequence[float] | np.ndarray) -> float:
    """Root mean squared error of the logistic-mapped predictions, in label units."""
    x, y = _clean(pred, label)
    if x.size < 4 or np.ptp(x) == 0:
        return math.nan
    return float(np.sqrt(np.mean((logistic4(x, fit_logistic4(x, y)) - y) ** 2)))


_FUNCS = {"srcc": srcc, "plcc": plcc, "krcc": krcc, "rmse": rmse}


@dataclass(frozen=True)
class Estimate:
    """A metric with its percentile-bootstrap confidence interval."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


def _percentile_interval(value: float, draws: np.ndarray, confidence: float) -> Estimate:
    """The value with the central `confidence` range of its finite bootstrap draws."""
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return Estimate(value, math.nan, math.nan)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(draws, [alpha, 1.0 - alpha])
    return Estimate(value, float(low), float(high))


def bootstrap(pred: Sequence[float] | np.ndarray, label: Sequence[float] | np.ndarray,
              metric: str, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
              ) -> Estimate:
    """The metric on all items and its percentile-bootstrap interval (resampling items)."""
    if metric not in _FUNCS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    x, y = _clean(pred, label)
    fn = _FUNCS[metric]
    value = fn(x, y)
    if x.size < 4 or n_boot < 1:
        return Estimate(value, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    draws = np.array([fn(x[idx], y[idx])
                      for idx in rng.integers(0, x.size, size=(n_boot, x.size))])
    return _percentile_interval(value, draws, confidence)


def paired_difference(pred_a: Sequence[float] | np.ndarray, pred_b: Sequence[float] | np.ndarray,
                      label: Sequence[float] | np.ndarray, metric: str = "srcc",
                      n_boot: int = 1000, confidence: float = 0.95, seed: int = 0) -> Estimate:
    """metric(b) - metric(a) on the same items, with a paired percentile-bootstrap interval.

    Why: two models scored on one test set share its sampling noise. Comparing their separate
    intervals (do they overlap?) counts that noise twice and misses real gains; resampling the
    items once per draw and differencing cancels it. Items with a NaN/inf in any of the three
    arrays are dropped first.
    """
    if metric not in _FUNCS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    a = np.asarray(pred_a, dtype=np.float64).reshape(-1)
    b = np.asarray(pred_b, dtype=np.float64).reshape(-1)
    y = np.asarray(label, dtype=np.float64).reshape(-1)
    if not a.shape == b.shape == y.shape:
        raise ValueError(f"{a.size} and {b.size} predictions for {y.size} labels")
    keep = np.isfinite(a) & np.isfinite(b) & np.isfinite(y)
    a, b, y = a[keep], b[keep], y[keep]
    fn = _FUNCS[metric]
    value = fn(b, y) - fn(a, y)
    if y.size < 4 or n_boot < 1:
        return Estimate(value, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    draws = np.array([fn(b[idx], y[idx]) - fn(a[idx], y[idx])
                      for idx in rng.integers(0, y.size, size=(n_boot, y.size))])
    return _percentile_interval(value, draws, confidence)


def evaluate(pred: Sequence[float] | np.ndarray, label: Sequence[float] | np.ndarray,
             groups: Sequence[str | None] | None = None, n_boot: int = 1000,
             confidence: float = 0.95, seed: int = 0,
             metrics: Sequence[str] = METRICS) -> dict[str, dict[str, object]]:
    """All metrics overall and per group (e.g. modality), each with n and bootstrap CIs.

    Returns {"all": {"n": n, "srcc": {"value", "low", "high"}, ...}, "<group>": {...}, ...};
    groups of None are counted in "all" only. Pairs with a NaN/inf are dropped first.
    """
    x = np.asarray(pred, dtype=np.float64).reshape(-1)
    y = np.asarray(label, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"{x.size} predictions but {y.size} labels")
    g = np.array(["" if v is None else str(v) for v in (groups if groups is not None
                                                         else [None] * x.size)], dtype=object)
    if g.size != x.size:
        raise ValueError(f"{g.size} groups for {x.size} items")
    out: dict[str, dict[str, object]] = {}
    subsets = [("all", np.ones(x.size, dtype=bool))]
    subsets += [(name, g == name) for name in sorted(set(g.tolist()) - {""})]
    for name, keep in subsets:
        xs, ys = _clean(x[keep], y[keep])
        row: dict[str, object] = {"n": int(xs.size)}
        for m in metrics:
            row[m] = bootstrap(xs, ys, m, n_boot, confidence, seed).as_dict()
        out[name] = row
    return out


__all__ = [
    "HIGHER_IS_BETTER",
    "METRICS",
    "Estimate",
    "bootstrap",
    "evaluate",
    "fit_logistic4",
    "krcc",
    "logistic4",
    "mapped",
    "paired_difference",
    "pearson",
    "plcc",
    "rankdata",
    "rmse",
    "srcc",
]
