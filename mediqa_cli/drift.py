"""Control charts for nightly quality: a robust baseline, then EWMA and CUSUM on each metric.

A QA programme asks one question per scanner and protocol every morning: is last night's quality
still what this scanner normally gives? Shewhart charts on raw scores answer it badly: scores
differ by patient and anatomy far more than a slowly failing coil changes them. So each night is
summarised (median score, fraction of low grades, median severity of each physical cause), and
each summary is charted against a baseline learnt on the group's first nights:

- Baseline (phase I): the first `baseline_nights` nights. The centre is the mean of their
  nightly values without the lowest and highest tenth (at least one each): one odd baseline
  night cannot move it, and its variance is 1.06 sigma^2 / k for ten normal nights, against
  1.38 for their median. The noise of a night's value is split into the sampling error of a
  median of n scans (sqrt(pi / 2) * sigma_within / sqrt(n), sigma_within a pooled MAD of scans
  around their night's median), widened by the baseline's over-dispersion (night-to-night
  variation beyond sampling). That factor is the mean of the squared standardised deviations,
  each capped at 2.5 sigma so that one odd night cannot inflate it; the median of ten squared
  deviations, used before, is about as uncertain as a mean over four nights. With the old
  limits these two estimates alone found more steps, sooner, and cut false alarms only a
  little. A night with few scans moves the chart less. The centre's own error (from only a few
  nights) widens the EWMA limits.
- EWMA (lambda 0.2) of the standardised value catches slow drift, on every metric; a one-sided
  CUSUM (k 1, h 7) on the median score catches steps. Both only look in the bad direction
  (score down; low grades and cause severities up): a better night is not an alert, and the
  EWMA is held at zero on the good side (a reflecting barrier), so a run of good nights does
  not leave it far below zero, slow to climb when quality turns (one-sided EWMA of Crowder and
  Hamilton, 1992; the normal-theory limits below are then conservative). EWMA limits
  use the exact EWMA variance plus the variance of the estimated centre, so neither the first
  monitored nights nor a centre learnt from ten nights make the chart over-sensitive. EWMA
  needs about four points to mean anything, hence `min_baseline`.
- An alarm needs the same statistic past its limit on `alarm_nights` (2) nights in a row. At
  the same false-alarm rate this finds more steps and drifts than one night past tighter
  limits; the price is about one night of delay.
- CUSUM is kept off the fraction and cause charts: with a centre learnt from ten nights its
  bias accumulates (k 0.5 on all eleven charts raised an alert in 44% of stable 30-night
  histories).
- Low-grade fraction: binomial sampling error around the baseline fraction, widened by the
  baseline's over-dispersion. A few low grades a night are far from normal: with the score's
  limit this chart alone would spend the whole false-alarm budget, so it has a wider one.

A scanner x protocol has eleven charts and any of them alerts, so the limits (`ChartSettings`)
share one budget: a stable 30-night history should raise no alarm on any night in at least 99
of 100 cases with all eleven watched. `benchmarks/drift_detection.py` measures the false-alarm
rate and the detection delay; `benchmarks/RESULTS.md` gives the figures and the rules that lost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

_MAD_TO_SIGMA = 1.4826
_MEDIAN_SE = math.sqrt(math.pi / 2.0)
_NORMAL = NormalDist()
_CAP = 2.5  # over-dispersion: squared deviations are capped at _CAP sigma


def _capped_chi2_1_mean(cap: float) -> float:
    """E[min(X, cap^2)] for X chi-square with 1 df: the capped mean of a standard night."""
    a = cap * cap
    below = 2.0 * _NORMAL.cdf(cap) - 1.0  # P(X < a)
    below3 = below - 2.0 * cap * _NORMAL.pdf(cap)  # P(chi-square 3 df < a) = E[X; X < a]
    return below3 + a * (1.0 - below)


_CAPPED_MEAN = _capped_chi2_1_mean(_CAP)


@dataclass(frozen=True)
class ChartSettings:
    """Baseline length and chart limits (in standard deviations of the standardised values)."""

    baseline_nights: int = 10
    min_baseline: int = 4
    ewma_lambda: float = 0.2
    ewma_limit: float = 3.5  # median score
    cusum_k: float = 1.0
    cusum_h: float = 7.0
    low_ewma_limit: float = 5.0
    cause_ewma_limit: float = 4.0
    alarm_nights: int = 2  # nights in a row beyond a limit before a chart alarms
    min_sigma_score: float = 0.5  # score points: a scanner that always gives 99 still varies
    min_sigma_cause: float = 0.005  # severity units (0-1)


@dataclass
class NightValues:
    """One night of one metric: the night's scan values (any length >= 1)."""

    night: str
    values: np.ndarray


@dataclass
class Chart:
    """One metric's chart: nightly values, baseline, standardised values, EWMA and CUSUM."""

    metric: str
    bad: str  # "down" or "up"
    nights: list[str]
    value: np.ndarray  # nightly summary (median, or fraction)
    n: np.ndarray  # scans per night
    centre: float = math.nan
    sigma: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per night, in value units
    z: np.ndarray = field(default_factory=lambda: np.zeros(0))  # signed so that bad is positive
    ewma: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ewma_limit: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cusum: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cusum_h: float = math.inf
    beyond: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # past a limit
    alarm: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # confirmed
    kind: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    baseline_nights: int = 0

    @property
    def learning(self) -> bool:
        """Too few nights for a baseline: no limits yet."""
        return not math.isfinite(self.centre)

    def lower_limit(self, limit_sigmas: float) -> np.ndarray:
        """Per-night value at `limit_sigmas` standard deviations on the bad side (for plots)."""
        sign = -1.0 if self.bad == "down" else 1.0
        return self.centre + sign * limit_sigmas * self.sigma


def robust_scale(values: np.ndarray) -> float:
    """1.4826 x the median absolute deviation: a standard deviation that ignores outliers."""
    if values.size == 0:
        return 0.0
    return float(_MAD_TO_SIGMA * np.median(np.abs(values - np.median(values))))


def median_chart(metric: str, nights: Sequence[NightValues], bad: str,
                 settings: ChartSettings, min_sigma: float, ewma_limit: float,
                 cusum_h: float) -> Chart:
    """Chart of the nightly median of `metric` (scores: bad "down"; severities: bad "up")."""
    value = np.array([float(np.median(n.values)) for n in nights])
    count = np.array([n.values.size for n in nights], dtype=float)
    chart = Chart(metric, bad, [n.night for n in nights], value, count)
    k = min(settings.baseline_nights, len(nights))
    if k < settings.min_baseline:
        return _learning(chart)
    base = nights[:k]
    # Residuals around a night's own median are too small by about sqrt((n - 1) / n).
    residuals = np.concatenate([(n.values - np.median(n.values)) * math.sqrt(n.values.size
                                / (n.values.size - 1)) for n in base if n.values.size > 1]
                               or [np.zeros(1)])
    within = max(robust_scale(residuals), min_sigma)
    # For a night of n scans, sigma of its median ~ sqrt(pi/2) sigma / sqrt(n) (never > sigma).
    se = within * np.minimum(1.0, _MEDIAN_SE / np.sqrt(np.maximum(count, 1.0)))
    chart.centre, centre_factor = trimmed_centre(value[:k])
    # Night-to-night variation beyond sampling: the mean squared standardised deviation, each
    # capped, over that of a capped chi-square 1 (k - 1 degrees of freedom), never below 1.
    squared = np.minimum(((value[:k] - chart.centre) / se[:k]) ** 2, _CAP ** 2)
    overdispersion = max(1.0, float(np.mean(squared)) / _CAPPED_MEAN * k / (k - 1))
    sigma = np.maximum(se * math.sqrt(overdispersion), min_sigma)
    # The centre's variance, shared by every night.
    centre_var = centre_factor * float(np.mean(sigma[:k] ** 2)) / k
    return _finish(chart, sigma, centre_var, k, settings, ewma_limit, cusum_h)


def trimmed_centre(values: np.ndarray) -> tuple[float, float]:
    """Mean of `values` without the lowest and highest tenth (at least one each), and its
    variance in units of sigma^2 / k for normal values (1.06 for k = 10, 1.19 for k = 4)."""
    k = values.size
    cut = max(1, int(0.1 * k))
    alpha = cut / k
    c = _NORMAL.inv_cdf(1.0 - alpha)
    inner = (1.0 - 2.0 * alpha) - 2.0 * c * _NORMAL.pdf(c)  # E[Z^2; |Z| < c]
    factor = (inner + 2.0 * alpha * c * c) / (1.0 - 2.0 * alpha) ** 2
    return float(np.mean(np.sort(values)[cut:k - cut])), factor


def fraction_chart(metric: str, nights: Sequence[NightValues], settings: ChartSettings) -> Chart:
    """Chart of the nightly fraction of flagged scans (values are 0/1), bad "up"."""
    value = np.array([float(np.mean(n.values)) for n in nights])
    count = np.array([n.values.size for n in nights], dtype=float)
    chart = Chart(metric, "up", [n.night for n in nights], value, count)
    k = min(settings.baseline_nights, len(nights))
    if k < settings.min_baseline:
        return _learning(chart)
    hits = float(sum(n.values.sum() for n in nights[:k]))
    total = float(count[:k].sum())
    p0 = (hits + 1.0) / (total + 2.0)  # never 0: one low grade must not be infinitely rare
    binomial = p0 * (1.0 - p0) / count[:k]
    chi2 = float(np.sum((value[:k] - p0) ** 2 / binomial))
    overdispersion = max(1.0, chi2 / max(k - 1, 1))
    chart.centre = p0
    sigma = np.sqrt(overdispersion * p0 * (1.0 - p0) / count)
    centre_var = overdispersion * p0 * (1.0 - p0) / total
    # Few low grades a night are far from normal: no CUSUM (one bad night would look like a
    # step) and a wider EWMA limit; steps show in the score's own CUSUM.
    return _finish(chart, sigma, centre_var, k, settings, settings.low_ewma_limit, math.inf)


def _learning(chart: Chart) -> Chart:
    size = len(chart.nights)
    chart.sigma = np.full(size, math.nan)
    chart.z = chart.ewma = chart.ewma_limit = chart.cusum = np.full(size, math.nan)
    chart.beyond = chart.alarm = np.zeros(size, dtype=bool)
    chart.kind = np.array([""] * size, dtype=object)
    return chart


def _finish(chart: Chart, sigma: np.ndarray, centre_var: float, k: int,
            settings: ChartSettings, ewma_limit: float, cusum_h: float) -> Chart:
    """Standardise (bad positive), run EWMA and CUSUM from the first night, flag alarms after
    the baseline: a statistic beyond its limit on `alarm_nights` monitored nights in a row.

    The EWMA limit is L standard deviations of the EWMA of standardised values, whose variance
    is lambda / (2 - lambda) (1 - (1 - lambda)^2t) for a known centre, plus the variance of the
    estimated centre (in units of each night's sigma^2): with a 10-night baseline that second
    term is larger than the first, and leaving it out makes one stable history in three alarm.
    """
    sign = -1.0 if chart.bad == "down" else 1.0
    z = sign * (chart.value - chart.centre) / sigma
    lam = settings.ewma_lambda
    ewma = np.zeros_like(z)
    cusum = np.zeros_like(z)
    level = upper = 0.0
    for t, value in enumerate(z):
        level = max(0.0, lam * value + (1.0 - lam) * level)
        upper = max(0.0, upper + value - settings.cusum_k)
        ewma[t], cusum[t] = level, upper
    steps = np.arange(1, z.size + 1)
    limit = ewma_limit * np.sqrt(lam / (2.0 - lam) * (1.0 - (1.0 - lam) ** (2 * steps))
                                 + centre_var / sigma ** 2)
    monitored = np.arange(z.size) >= k
    past_ewma, past_cusum = monitored & (ewma > limit), monitored & (cusum > cusum_h)
    drift = _held(past_ewma, settings.alarm_nights)
    step = _held(past_cusum, settings.alarm_nights)
    chart.sigma, chart.z, chart.ewma, chart.ewma_limit, chart.cusum = sigma, z, ewma, limit, cusum
    chart.cusum_h = cusum_h
    chart.beyond = past_ewma | past_cusum
    chart.alarm = drift | step
    chart.kind = np.array(["drift+step" if d and s else "drift" if d else "step" if s else ""
                           for d, s in zip(drift, step)], dtype=object)
    chart.baseline_nights = k
    return chart


def _held(past: np.ndarray, nights: int) -> np.ndarray:
    """True where `past` holds on this night and the `nights` - 1 before it."""
    held = past.copy()
    for back in range(1, nights):
        held[back:] &= past[:-back]
        held[:back] = False
    return held


def alarm_since(chart: Chart) -> str | None:
    """First night of the run beyond a limit that ends in an alarm on the chart's last night
    (None if the last night is not an alarm)."""
    if chart.alarm.size == 0 or not chart.alarm[-1]:
        return None
    t = chart.alarm.size - 1
    while t > 0 and chart.beyond[t - 1]:
        t -= 1
    return chart.nights[t]


def first_alarm(chart: Chart) -> int | None:
    """Index of the first alarmed night (benchmarks: detection delay, false alarms)."""
    hits = np.flatnonzero(chart.alarm)
    return int(hits[0]) if hits.size else None
