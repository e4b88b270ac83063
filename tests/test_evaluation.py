"""Evaluation metrics: SRCC, KRCC, PLCC after a 4-parameter logistic, RMSE, bootstrap CIs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mediqa_cli.evaluation import (
    bootstrap,
    evaluate,
    fit_logistic4,
    krcc,
    logistic4,
    pearson,
    plcc,
    rankdata,
    rmse,
    srcc,
)


def test_ranks_give_ties_their_average_rank() -> None:
    np.testing.assert_allclose(rankdata(np.array([10.0, 20.0, 10.0, 5.0])), [2.5, 4.0, 2.5, 1.0])


def test_srcc_is_one_for_any_monotone_map_and_minus_one_reversed() -> None:
    x = np.linspace(-3, 3, 50)
    assert srcc(x, np.exp(x)) == pytest.approx(1.0)
    assert srcc(x, -(x**3)) == pytest.approx(-1.0)


def test_srcc_with_ties_matches_a_hand_computed_value() -> None:
    # ranks x: 1, 2.5, 2.5, 4 ; ranks y: 1, 2, 3, 4 -> Pearson of the ranks
    expected = pearson(np.array([1, 2.5, 2.5, 4.0]), np.array([1, 2, 3, 4.0]))
    assert srcc([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(expected)
    assert expected == pytest.approx(0.9486833, abs=1e-6)


def test_kendall_tau_b_counts_pairs_and_corrects_for_ties() -> None:
    # pairs of (1,1),(2,3),(3,2),(4,4): 5 concordant, 1 discordant, no ties -> 4/6
    assert krcc([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # x has one tied pair: C=5, D=0, n0=6, tx=1, ty=0 -> 5 / sqrt(5 * 6)
    assert krcc([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(5 / math.sqrt(30))


def test_kendall_blocks_give_the_same_answer_as_one_block() -> None:
    import mediqa_cli.evaluation as ev

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=300).round(1), rng.normal(size=300).round(1)
    whole = krcc(x, y)
    old = ev._KENDALL_BLOCK
    try:
        ev._KENDALL_BLOCK = 7
        assert krcc(x, y) == pytest.approx(whole)
    finally:
        ev._KENDALL_BLOCK = old


def test_plcc_after_the_logistic_forgives_a_monotone_nonlinearity() -> None:
    x = np.linspace(0, 100, 80)
    y = logistic4(x, np.array([5.0, 1.0, 50.0, 8.0]))
    assert pearson(x, y) < 0.97
    assert plcc(x, y) == pytest.approx(1.0, abs=1e-6)
    assert rmse(x, y) == pytest.approx(0.0, abs=1e-4)


def test_logistic_fit_recovers_its_parameters() -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 100, 400)
    truth = np.array([4.5, 1.2, 40.0, 12.0])
    y = logistic4(x, truth) + rng.normal(0, 0.02, x.size)
    b = fit_logistic4(x, y)
    np.testing.assert_allclose([b[0], b[1], b[2], abs(b[3])], truth, rtol=0.05)


def test_rmse_is_in_label_units_after_mapping() -> None:
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, 500)
    y = 1 + 4 * x + rng.normal(0, 0.3, x.size)  # labels on a 1..5 scale, noise sd 0.3
    assert rmse(x, y) == pytest.approx(0.3, rel=0.1)
    assert rmse(100 * x, y) == pytest.approx(rmse(x, y), rel=1e-3)  # the predictor's scale is free


def test_bootstrap_interval_brackets_the_value_and_is_reproducible() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=200)
    y = x + rng.normal(size=200)
    a = bootstrap(x, y, "srcc", n_boot=200, seed=7)
    b = bootstrap(x, y, "srcc", n_boot=200, seed=7)
    assert a == b
    assert a.low < a.value < a.high
    wide = bootstrap(x[:30], y[:30], "srcc", n_boot=200, seed=7)
    assert (wide.high - wide.low) > (a.high - a.low)


def test_evaluate_reports_every_metric_overall_and_per_group() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=60)
    y = x + rng.normal(scale=0.5, size=60)
    groups = ["MR"] * 30 + ["CT"] * 30
    x[0] = np.nan  # dropped, not propagated
    out = evaluate(x, y, groups, n_boot=50)
    assert set(out) == {"all", "CT", "MR"}
    assert out["all"]["n"] == 59 and out["MR"]["n"] == 29 and out["CT"]["n"] == 30
    for row in out.values():
        for metric in ("srcc", "plcc", "krcc", "rmse"):
            assert math.isfinite(row[metric]["value"])


def test_mismatched_lengths_and_unknown_metrics_are_refused() -> None:
    with pytest.raises(ValueError, match="labels"):
        evaluate([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="metric"):
        bootstrap([1, 2, 3, 4], [1, 2, 3, 4], "auc")


def test_constant_predictions_give_nan_not_an_error() -> None:
    assert math.isnan(srcc([1, 1, 1, 1], [1, 2, 3, 4]))
    assert math.isnan(plcc([1, 1, 1, 1], [1, 2, 3, 4]))


def test_plcc_keeps_the_sign_of_a_predictor_that_runs_the_wrong_way() -> None:
    x = np.linspace(0, 1, 40)
    assert plcc(x, 1 + 4 * x) == pytest.approx(1.0, abs=1e-6)
    assert plcc(x, 5 - 4 * x) == pytest.approx(-1.0, abs=1e-6)


def test_paired_difference_sees_a_gain_that_separate_intervals_hide() -> None:
    from mediqa_cli.evaluation import bootstrap, paired_difference

    rng = np.random.default_rng(0)
    label = rng.normal(size=200)
    shared = rng.normal(size=200)  # what both models get wrong alike
    before = label + shared + 0.8 * rng.normal(size=200)
    after = label + shared  # the same error, less noise of its own
    a, b = bootstrap(before, label, "srcc"), bootstrap(after, label, "srcc")
    assert b.low < a.high  # the separate intervals overlap ...
    gain = paired_difference(before, after, label, "srcc")
    assert gain.value == pytest.approx(b.value - a.value)
    assert 0.0 < gain.low < gain.value < gain.high  # ... the paired one excludes zero


def test_paired_difference_of_a_model_with_itself_is_exactly_zero() -> None:
    from mediqa_cli.evaluation import paired_difference

    x = np.arange(10.0)
    y = np.array([0.0, 2, 1, 3, 5, 4, 6, 8, 7, np.nan])
    same = paired_difference(x, x, y, "srcc", n_boot=50)
    assert same.value == same.low == same.high == 0.0
    with pytest.raises(ValueError):
        paired_difference(x, x[:5], y, "srcc")
