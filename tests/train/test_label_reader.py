"""The site reader: logistic regression of expert labels on the physics tokens and the
network's out-of-fold logit (`mediqa_train.label_reader`)."""

from __future__ import annotations

import numpy as np
import pytest
from mediqa_train import label_reader
from mediqa_train.expert import auc
from mediqa_train.label_reader import (
    choose_fit,
    fit_label_reader,
    fit_site_head,
    folds_by_label,
    scan_tokens,
)

from mediqa_cli.calibration import raw_logit
from mediqa_cli.physics import N_PHYSICS, PHYSICS_FEATURES

NOISE = PHYSICS_FEATURES.index("noise")


def _site(n: int, seed: int, network_informative: bool) -> tuple[np.ndarray, ...]:
    """n scans: labels 0/1; the noise token (or the network's logit) separates them."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(float)
    tokens = rng.normal(size=(n, N_PHYSICS))
    logits = rng.normal(size=n)
    if network_informative:
        logits += 3.0 * (y - 0.5)
    else:
        tokens[:, NOISE] -= 3.0 * (y - 0.5)  # accepted scans are less noisy
    return tokens, logits, y


def test_the_reader_learns_the_token_the_labels_follow_and_leaves_a_useless_network():
    tokens, logits, y = _site(60, 0, network_informative=False)
    reader = fit_label_reader(tokens, logits, y, l2=1.0)
    assert np.argmax(np.abs(reader.weights)) == NOISE and reader.weights[NOISE] > 0
    assert abs(reader.network_weight) < 0.5
    test_tokens, test_logits, test_y = _site(200, 1, network_informative=False)
    assert auc(reader.logit(test_logits, test_tokens), test_y) > 0.9


def test_the_reader_trusts_a_network_that_separates_the_labels():
    tokens, logits, y = _site(60, 0, network_informative=True)
    reader = fit_label_reader(tokens, logits, y, l2=1.0)
    assert reader.network_weight > 1.0
    assert np.abs(reader.weights).max() < reader.network_weight
    test_tokens, test_logits, test_y = _site(200, 1, network_informative=True)
    assert auc(reader.logit(test_logits, test_tokens), test_y) > 0.9


def test_the_stored_reader_reproduces_the_fitted_probabilities():
    """Folding the logit's standardisation into g and the offset must not change a margin:
    a heavily regularised fit shrinks to the label mean, which the stored reader must give."""
    tokens, logits, y = _site(40, 2, network_informative=False)
    y[:30] = 1.0  # 3 in 4 accepted
    flat = fit_label_reader(tokens, logits + 50.0, y, l2=1e5)
    p = 1.0 / (1.0 + np.exp(-flat.logit(logits + 50.0, tokens)))
    np.testing.assert_allclose(p, y.mean(), atol=1e-3)


def test_choose_fit_shrinks_hard_when_nothing_predicts_the_labels():
    rng = np.random.default_rng(3)
    tokens, logits = rng.normal(size=(40, N_PHYSICS)), rng.normal(size=40)
    y = (rng.random(40) < 0.5).astype(float)
    assert choose_fit(tokens, logits, y)[0] == max(label_reader.L2_GRID)
    tokens, logits, y = _site(40, 4, network_informative=False)
    assert choose_fit(tokens, logits, y)[0] < max(label_reader.L2_GRID)


def test_choose_fit_keeps_a_network_that_separates_the_labels_and_drops_one_that_does_not():
    """Where only a token follows the labels, the network's logit is noise the cross-validation
    leaves out, and the stored reader ignores it; where the network separates them, it stays."""
    dropped = []
    for seed in range(6):
        tokens, logits, y = _site(40, 10 + seed, network_informative=False)
        logits = logits * 3.0  # a loud, useless network
        dropped.append(not choose_fit(tokens, logits, y, seed)[1])
    assert sum(dropped) >= 3  # 4 of 6 here; a reader that always keeps it drops none
    tokens, logits, y = _site(40, 20, network_informative=True)
    assert choose_fit(tokens, logits, y)[1]
    tokens, logits, y = _site(40, 10, network_informative=False)
    reader = fit_label_reader(tokens, logits, y, l2=1.0, with_network=False)
    assert reader.network_weight == 0.0
    np.testing.assert_allclose(reader.logit(logits, tokens), reader.logit(logits + 7.0, tokens))
    back = type(reader).from_dict(reader.to_dict(), N_PHYSICS)
    np.testing.assert_allclose(back.logit(logits, tokens), reader.logit(logits, tokens))


def test_folds_by_label_partition_the_scans_with_the_labels_spread():
    y = np.array([0.0] * 12 + [1.0] * 8)
    folds = folds_by_label(y, 4, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(20))
    assert all(y[f].sum() == 2 for f in folds)


def test_fit_site_head_reads_modalities_with_enough_labels_only():
    tokens, logits, y = _site(40, 5, network_informative=False)
    scores = 100.0 / (1.0 + np.exp(-logits))
    modalities = ["US"] * 30 + ["XR"] * 10
    head = fit_site_head(modalities, tokens, scores, y, source="labels.csv")
    assert head is not None and set(head.readers) == {"US"}
    assert "US 30 labels" in head.fitted_on and "labels.csv" in head.fitted_on
    np.testing.assert_allclose(raw_logit(scores[:2]), logits[:2], atol=1e-6)
    assert fit_site_head(["US"] * 10, tokens[:10], scores[:10], y[:10]) is None
    assert fit_site_head(["US"] * 40, tokens, scores, np.ones(40)) is None  # labels all equal
    assert fit_site_head(["US"] * 40, np.full_like(tokens, np.nan), scores, y) is None


def test_scan_tokens_average_the_slices_that_have_measures():
    a, b = np.zeros(N_PHYSICS), np.full(N_PHYSICS, 2.0)
    b[0] = np.nan
    mean = scan_tokens([a, None, b])
    assert mean[1] == pytest.approx(1.0) and mean[0] == pytest.approx(0.0)
    assert np.isnan(scan_tokens([None])).all()
