"""Every registered simulator keeps the contract; the quality target falls with severity."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from mediqa_train.config import LossWeights
from mediqa_train.degrade import REGISTRY, candidates, combine_severities, draw
from mediqa_train.degrade.generic import JpegParams
from mediqa_train.quality import (
    SHADING_WEIGHT,
    reference_quality,
    shading_of,
    target_description,
    trained_shading_weight,
)
from train_images import real_image

from mediqa_cli.taxonomy import MODALITIES, PHYSICAL_FAMILIES

KEYS = sorted(REGISTRY)


def test_every_family_and_modality_is_covered():
    covered = {family for sim in REGISTRY.values() for family in sim.families}
    assert covered == set(PHYSICAL_FAMILIES)
    for modality in MODALITIES:
        assert len(candidates(modality)) >= 3, modality


@pytest.mark.parametrize("key", KEYS)
def test_simulator_returns_its_params_and_severity_zero_leaves_the_image(key, rng):
    sim = REGISTRY[key]
    image, spacing = real_image(sim.modalities[0])
    params = sim.sample(rng, 0.0)
    assert dataclasses.is_dataclass(params)
    assert set(sim.severities(params)) == set(sim.families)
    assert max(sim.severities(params).values()) == 0.0
    out = sim.apply(image, spacing, params, rng)
    assert out.shape == image.shape and out.dtype == torch.float32
    tol = 1e-4 * float(image.abs().max())
    assert torch.allclose(out, image, atol=tol)
    strong = sim.sample(rng, 1.0)
    assert max(sim.severities(strong).values()) > 0.95
    assert sim.record(strong)["params"] == dataclasses.asdict(strong)


@pytest.mark.parametrize("key", KEYS)
def test_reference_quality_falls_monotonically_with_severity_on_a_real_image(key):
    sim = REGISTRY[key]
    modality = sim.modalities[0]
    image, spacing = real_image(modality)
    scores = []
    for severity in (0.0, 0.25, 0.5, 0.75, 1.0):
        rng = torch.Generator().manual_seed(7)  # same artefact, only stronger
        out = sim.apply(image, spacing, sim.sample(rng, severity), rng)
        scores.append(reference_quality(image, out, modality))
    assert scores[0] == 100.0
    assert all(b <= a + 0.25 for a, b in zip(scores, scores[1:], strict=False)), scores
    assert scores[4] < scores[2] < scores[0], scores


@pytest.mark.parametrize("key", [k for k in KEYS if REGISTRY[k].smooth_field])
def test_a_shading_field_costs_what_its_severity_says_in_steps_the_ranking_sees(key):
    sim = REGISTRY[key]
    modality = sim.modalities[0]
    image, spacing = real_image(modality)
    targets = [100.0]
    for severity in (0.2, 0.4, 0.6, 0.8, 1.0):
        rng = torch.Generator().manual_seed(7)
        params = sim.sample(rng, severity)
        out = sim.apply(image, spacing, params, rng)
        shading = sim.severities(params)["bias"]
        ssim_only = reference_quality(image, out, modality, shading_weight=0.0)
        targets.append(reference_quality(image, out, modality, shading=shading,
                                         shading_weight=SHADING_WEIGHT))
        assert targets[-1] == pytest.approx(ssim_only * (1 - SHADING_WEIGHT * shading))
        assert shading_of([severity if f == "bias" else 0.0 for f in PHYSICAL_FAMILIES],
                          [key]) == pytest.approx(severity)
    margin = LossWeights().rank_margin
    assert all(a - b > margin for a, b in zip(targets, targets[1:], strict=False)), targets


def test_ultrasound_gain_errors_are_not_priced_twice():
    """SSIM sees TGC bands: the shading term is for smooth fields only."""
    sev = [1.0 if f == "bias" else 0.0 for f in PHYSICAL_FAMILIES]
    assert shading_of(sev, ["us_gain"]) == 0.0
    assert shading_of(sev, ["jpeg", "mr_bias"]) == 1.0
    sim = REGISTRY["us_gain"]
    image, spacing = real_image("US")
    rng = torch.Generator().manual_seed(7)
    params = dataclasses.replace(sim.sample(rng, 1.0), gain_db=0.0)
    out = sim.apply(image, spacing, params, rng)
    assert sim.severities(params)["bias"] > 0.9
    assert reference_quality(image, out, "US") < 90.0


def test_a_weights_folder_is_judged_by_the_target_its_recipe_trained_on():
    legacy = {"training": {"run_config": {"data": {"crop_min": 64}}}}
    priced = {"training": {"run_config": {"data": {"shading_weight": 0.35}}}}
    assert trained_shading_weight({}) == trained_shading_weight(legacy) == 0.0
    assert trained_shading_weight(priced) == 0.35
    assert "bias" not in target_description(0.0) and "0.35" in target_description(0.35)


@pytest.mark.parametrize("key", KEYS)
def test_same_seed_same_degradation(key):
    sim = REGISTRY[key]
    image, spacing = real_image(sim.modalities[0])
    outs = []
    for _ in range(2):
        rng = torch.Generator().manual_seed(99)
        outs.append(sim.apply(image, spacing, sim.sample(rng, None), rng))
    assert torch.equal(outs[0], outs[1])


def test_draw_builds_a_physically_ordered_chain_for_the_modality():
    chain = draw("MR", torch.Generator().manual_seed(5), severity=0.5)
    assert 1 <= len(chain.steps) <= 3
    assert all("MR" in sim.modalities for sim, _ in chain.steps)
    stages = [sim.stage for sim, _ in chain.steps]
    assert stages == sorted(stages)
    vector = chain.severity_vector()
    assert vector.shape == (len(PHYSICAL_FAMILIES),)
    assert float(vector.max()) > 0 and float(vector.min()) >= 0
    image, spacing = real_image("MR")
    rng = torch.Generator().manual_seed(1)
    assert chain.apply(image, spacing, rng).shape == image.shape


def test_chains_cover_several_simulators_and_lengths():
    seen, lengths = set(), set()
    for seed in range(40):
        chain = draw("CT", torch.Generator().manual_seed(seed))
        seen |= {sim.name for sim, _ in chain.steps}
        lengths.add(len(chain.steps))
    assert lengths == {1, 2, 3}
    assert len(seen) >= 5


def test_severities_of_one_family_combine_as_noisy_or():
    combined = combine_severities([{"noise": 0.5}, {"noise": 0.5, "blur": 0.2}])
    assert combined["noise"] == pytest.approx(0.75)
    assert combined["blur"] == pytest.approx(0.2)
    assert combined["motion"] == 0.0


def test_jpeg_goes_through_a_real_block_codec(rng):
    image, spacing = real_image("FUNDUS")
    out = REGISTRY["jpeg"].apply(image, spacing, JpegParams(10), rng)
    grey = (out - image).mean(0)
    # blocking: the jump across 8x8 (16x16 for subsampled chroma) block edges beats the jump inside
    jumps = (grey[:, 1:] - grey[:, :-1]).abs().mean(0)
    at_edges = jumps[7::8].mean()
    inside = torch.cat([jumps[i::8] for i in range(7)]).mean()
    assert at_edges > 1.3 * inside


def test_a_simulator_outside_training_is_left_out_of_chains_and_validation_ladders():
    """`in_training` False (photo_sensor_noise): the shipped recipe's chains and validation
    ladders stay what they were, while the token readers still see the simulator."""
    from mediqa_train.ladders import family_simulators

    outside = {k for k, sim in REGISTRY.items() if not sim.in_training}
    assert "photo_sensor_noise" in outside
    for modality in MODALITIES:
        assert not outside & set(candidates(modality))
        assert not outside & {k for keys in family_simulators(modality).values() for k in keys}


def test_sensor_noise_is_poisson_gaussian_on_linear_light():
    """The noise grows with severity, and more in dark regions than in bright ones (photon
    noise on linear light, seen through the stored gamma)."""
    sim = REGISTRY["photo_sensor_noise"]
    image = torch.full((3, 64, 64), 160.0)
    image[:, :32] = 40.0
    spreads = []
    for severity in (0.25, 0.5, 1.0):
        rng = torch.Generator().manual_seed(0)
        out = sim.apply(image, (1.0, 1.0), sim.sample(rng, severity), rng)
        spreads.append((float(out[:, :32].std()), float(out[:, 32:].std())))
        assert out.min() >= 0 and out.max() <= 255 and torch.equal(out, out.round())
    assert spreads[0][0] < spreads[1][0] < spreads[2][0]
    assert spreads[0][1] < spreads[1][1] < spreads[2][1]
    assert all(dark > bright for dark, bright in spreads)


def test_dim_capture_only_darkens_and_adds_noise_as_light_falls():
    """One-sided: every severity stores a darker picture than the last, and on a flat field the
    relative noise (std / mean of the stored values) rises as the light falls."""
    sim = REGISTRY["photo_dim_capture"]
    assert sim.modalities == ("FUNDUS",) and not sim.in_training
    image = torch.full((3, 64, 64), 150.0)
    means, relative = [150.0], [0.0]
    for severity in (0.2, 0.5, 1.0):
        rng = torch.Generator().manual_seed(0)
        out = sim.apply(image, (1.0, 1.0), sim.sample(rng, severity), rng)
        assert out.min() >= 0 and out.max() <= 255 and torch.equal(out, out.round())
        means.append(float(out.mean()))
        relative.append(float(out.std()) / float(out.mean()))
    assert means == sorted(means, reverse=True) and means[-1] < 0.6 * means[0]
    assert relative == sorted(relative)


def test_a_recipe_adds_a_simulator_outside_training_for_the_modalities_it_names():
    from mediqa_train.batches import BatchRecipe

    recipe = BatchRecipe(added_simulators=("photo_sensor_noise:HISTO",))
    assert recipe.added_for("HISTO") == ("photo_sensor_noise",) and recipe.added_for("FUNDUS") == ()
    added = recipe.added_for("HISTO")
    seen = {sim.name for seed in range(60)
            for sim, _ in draw("HISTO", torch.Generator().manual_seed(seed), added=added).steps}
    assert "photo_sensor_noise" in seen
    assert all(sim.name != "photo_sensor_noise" for seed in range(60) for sim, _ in
               draw("FUNDUS", torch.Generator().manual_seed(seed)).steps)
    with pytest.raises(ValueError, match="does not apply"):
        BatchRecipe(added_simulators=("photo_sensor_noise:MR",))
