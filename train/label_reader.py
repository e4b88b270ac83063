"""A site's physics-token reader, fitted on its own expert labels beside the fine-tuned network.

Why: with a few dozen labels the fine-tuned network's prompts and heads do not learn what the
site's readers reject when the network has no notion of it. On the hip ultrasound labels, 50
images, the fine-tuned score separates accepted from rejected at AUC 0.49 where the noise sigma
alone reaches 0.69 (`benchmarks/results/hip_crossfit_v080.json`). The whole-slice physics tokens
(`mediqa_cli.physics`) already hold the classical measures; a regularised linear model of them
and of the network's logit learns from the labels how much of each the site cares about, the
network included.

Model: logistic regression of the label (mapped to 0..1, a soft target for graded labels) on
the standardised tokens (a missing one at the mean) and the network's standardised logit. It is
stored as a `TokenReader` with `network_weight`, so scoring computes `100 * sigmoid(g * logit -
w . z - offset)`: for binary labels, the estimated chance that the site's readers accept the
scan. The L2 strength, and whether the network's logit is an input at all, are chosen by
cross-validation on the labels it is fitted on (held-out log loss), never on the scans it is
judged on: with a few dozen labels a network that does not separate them is one more noisy
input (on the hip labels the fine-tuned network alone reads AUC 0.48), and without it the
stored reader's `network_weight` is 0.

The network's logits must be out of fold (each from a network not tuned on that scan): a tuned
network's logits on its own training labels look better than they are, and a reader fitted on
them would trust the network too much. `mediqa_train.finetune` passes its cross-validation's
out-of-fold scores.

A scan's tokens are the mean of its prepared slices' tokens (exact for a 2D image; scoring
applies the reader per slice, then averages the slices' scores).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from mediqa_train.physics_head import token_moments
from scipy.optimize import minimize

from mediqa_cli.calibration import raw_logit
from mediqa_cli.physics import PHYSICS_FEATURES
from mediqa_cli.physics_head import PhysicsHead, TokenReader

L2_GRID = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)  # per standardised input, in units of one label
MIN_LABELS = 20  # per modality: fewer cannot choose an L2 strength by cross-validation
INNER_FOLDS = 4


def scan_tokens(slices: Sequence[np.ndarray | None]) -> np.ndarray:
    """(N_PHYSICS,) mean of the slices' measures, NaN where no slice has one."""
    rows = [np.asarray(s, dtype=np.float64) for s in slices if s is not None]
    if not rows:
        return np.full(len(PHYSICS_FEATURES), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.stack(rows), axis=0)


def _design(tokens: np.ndarray, logits: np.ndarray, mean: np.ndarray, scale: np.ndarray,
            with_network: bool = True) -> np.ndarray:
    z = np.nan_to_num((tokens - mean[:-1]) / scale[:-1])
    return np.column_stack([z, (logits - mean[-1]) / scale[-1]]) if with_network else z


def _standardiser(tokens: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, scale = token_moments(np.column_stack([tokens, logits]))
    return mean, np.where(scale > 1e-9, scale, 1.0)


def _log_loss(margin: np.ndarray, target: np.ndarray) -> float:
    """Soft-label logistic loss, summed: -t log sigmoid(m) - (1 - t) log sigmoid(-m)."""
    return float(np.sum(np.logaddexp(0.0, margin) - target * margin))


def _logistic(x: np.ndarray, target: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """(coefficients, intercept) minimising the soft-label log loss + l2/2 |coefficients|^2."""
    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        margin = x @ theta[:-1] + theta[-1]
        p = 1.0 / (1.0 + np.exp(-margin))
        value = _log_loss(margin, target) + 0.5 * l2 * float(theta[:-1] @ theta[:-1])
        residual = p - target
        return value, np.append(x.T @ residual + l2 * theta[:-1], residual.sum())

    theta = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B").x
    return theta[:-1], float(theta[-1])


def fit_label_reader(tokens: np.ndarray, logits: np.ndarray, target01: np.ndarray,
                     l2: float, with_network: bool = True) -> TokenReader:
    """The reader for these scans: tokens (n, N_PHYSICS), the network's out-of-fold logits (n,),
    labels mapped to 0..1 (n,); without the network, the tokens alone (`network_weight` 0)."""
    tokens, logits = np.asarray(tokens, np.float64), np.asarray(logits, np.float64)
    target = np.clip(np.asarray(target01, np.float64), 0.0, 1.0)
    mean, scale = _standardiser(tokens, logits)
    coef, intercept = _logistic(_design(tokens, logits, mean, scale, with_network), target, l2)
    if not with_network:
        return TokenReader(mean[:-1], scale[:-1], -coef, offset=-intercept, network_weight=0.0)
    # g * logit - w . z - offset, with the logit's own standardisation folded into g and offset
    network_weight = float(coef[-1] / scale[-1])
    offset = float(coef[-1] * mean[-1] / scale[-1] - intercept)
    return TokenReader(mean[:-1], scale[:-1], -coef[:-1], offset=offset,
                       network_weight=network_weight)


def folds_by_label(target01: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """k folds with the labels spread evenly: scans sorted by label, dealt round-robin after a
    seeded shuffle within ties."""
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(target01)), np.asarray(target01)))
    start = int(rng.integers(k))
    return [np.sort(order[(i + start) % k::k]) for i in range(k)]


def choose_fit(tokens: np.ndarray, logits: np.ndarray, target01: np.ndarray,
               seed: int = 0, grid: Sequence[float] = L2_GRID) -> tuple[float, bool]:
    """(L2 strength, whether the network's logit enters) with the lowest held-out log loss over
    INNER_FOLDS folds of these scans; with the network first, so a tie keeps it."""
    target = np.clip(np.asarray(target01, np.float64), 0.0, 1.0)
    folds = folds_by_label(target, INNER_FOLDS, seed)
    choices = [(l2, with_network) for with_network in (True, False) for l2 in grid]
    losses = []
    for l2, with_network in choices:
        total = 0.0
        for held in folds:
            fit = np.setdiff1d(np.arange(len(target)), held)
            reader = fit_label_reader(tokens[fit], logits[fit], target[fit], l2, with_network)
            margin = reader.logit(logits[held], tokens[held])
            total += _log_loss(margin, target[held])
        losses.append(total)
    l2, with_network = choices[int(np.argmin(losses))]
    return float(l2), with_network


def fit_site_head(modalities: Sequence[str], tokens: np.ndarray, scores: np.ndarray,
                  target01: np.ndarray, seed: int = 0, source: str = "") -> PhysicsHead | None:
    """One reader per modality with at least MIN_LABELS scans whose labels differ and measured
    tokens (a network without physics tokens prepares none, and scoring would not apply a
    reader), from the network's out-of-fold scores (0..100); None when no modality has one."""
    modalities = np.asarray(modalities)
    logits = raw_logit(np.asarray(scores, np.float64))
    target = np.asarray(target01, np.float64)
    readers, chosen = {}, []
    for modality in sorted(set(modalities.tolist())):
        rows = np.flatnonzero(modalities == modality)
        if (len(rows) < MIN_LABELS or np.ptp(target[rows]) <= 0
                or not np.isfinite(tokens[rows]).any()):  # a network without physics tokens
            continue
        l2, with_network = choose_fit(tokens[rows], logits[rows], target[rows], seed)
        readers[modality] = fit_label_reader(tokens[rows], logits[rows], target[rows], l2,
                                             with_network)
        chosen.append(f"{modality} {len(rows)} labels, L2 {l2:g}"
                      + ("" if with_network else ", tokens only"))
    if not readers:
        return None
    fitted_on = (f"site labels{f' ({source})' if source else ''}: {'; '.join(chosen)}; "
                 "logistic on the tokens and, where the labels' cross-validation keeps it, the "
                 "fine-tuned network's out-of-fold logit")
    return PhysicsHead(readers, PHYSICS_FEATURES, fitted_on)
