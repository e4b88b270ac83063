"""Pre-training: batches built by the inference path, the multi-task loss, schedule, checkpoints.

The smoke run (tiny config, a few steps, real packaged images) runs end to end in CI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from mediqa_train.batches import (
    BatchRecipe,
    BatchStream,
    ExampleMaker,
    tokens_for,
)
from mediqa_train.config import LossWeights, OptimConfig, RunConfig
from mediqa_train.losses import context_loss, multitask_loss
from mediqa_train.optim import cycles_done, lr_factor, schedule_progress
from mediqa_train.pretrain import pretrain

from mediqa_cli.model.config import ModelConfig
from mediqa_cli.model.network import MedIQANet
from mediqa_cli.model.weights import load_weights
from mediqa_cli.taxonomy import PHYSICAL_FAMILIES
from tests.train.train_images import CorpusLikeItem as Item
from tests.train.train_images import real_image

ANATOMY = {"CT": "head", "MR": "upper_limb", "FUNDUS": "eye", "XR": "chest"}


@pytest.fixture(scope="module")
def pool() -> list[Item]:
    return [Item(*real_image(m), m, ANATOMY[m], f"test:{m}") for m in ANATOMY]


def tiny_run(**data: object) -> RunConfig:
    return RunConfig.from_dict({
        "model": ModelConfig.tiny().to_dict(),
        "data": {"crop_min": 32, "crop_max": 64, "ct_crop_max": 48, "max_tokens": 256, **data},
        "optim": {"lr": 1e-3, "warmup_steps": 1, "steps": 4},
        "workers": 0, "log_every": 1, "ckpt_every": 2, "val_every": 2, "val_examples": 4,
    })


def test_batches_respect_the_token_budget_and_carry_labels_in_range(pool: list[Item]) -> None:
    run = tiny_run()
    stream = iter(BatchStream(pool, run.model, run.data, seed=0))
    for _ in range(3):
        b = next(stream)
        tokens = b.n_patches + b.n_slices * run.model.n_queries
        assert tokens <= run.data.max_tokens or b.n_slices == 1
        assert b.severities.shape == (b.n_slices, len(PHYSICAL_FAMILIES))
        assert float(b.severities.min()) >= 0.0 and float(b.severities.max()) <= 1.0
        assert float(b.quality.min()) >= 0.0 and float(b.quality.max()) <= 100.0


def test_a_training_slice_is_tokenised_exactly_as_the_scorer_would(pool: list[Item]) -> None:
    from mediqa_cli.preprocess import preprocess_slice
    from mediqa_cli.saliency import select_patches

    image, spacing = real_image("MR")
    config = ModelConfig.from_dict({**ModelConfig().to_dict(), "physics_tokens": True})
    ours = tokens_for(image, "MR", spacing, config, seed=5)
    ref = preprocess_slice(image.numpy(), "MR", spacing, config.max_patches, physics=True)
    keep = select_patches([ref], keep=config.keep_patches, seeds=[5])[0]
    np.testing.assert_array_equal(ours.patches, ref.take(keep.indices).patches)
    assert ours.spacing_mm == ref.spacing_mm
    np.testing.assert_array_equal(ours.physics, ref.physics)  # measured on the whole slice


def test_clean_examples_have_zero_severity_and_full_quality(pool: list[Item]) -> None:
    run = tiny_run(clean_fraction=1.0)
    maker = ExampleMaker(pool, run.model, run.data)
    rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
    for _ in range(4):
        ex = maker.example(rng, gen)
        assert ex.quality == 100.0 and not ex.severities.any() and ex.chain == []


def test_degraded_examples_name_their_chain_and_lose_quality(pool: list[Item]) -> None:
    run = tiny_run(clean_fraction=0.0)
    maker = ExampleMaker(pool, run.model, run.data)
    rng, gen = np.random.default_rng(1), torch.Generator().manual_seed(1)
    examples = [maker.example(rng, gen) for _ in range(6)]
    assert all(ex.chain for ex in examples)
    assert all(ex.severities.max() > 0 for ex in examples)
    assert np.mean([ex.quality for ex in examples]) < 100.0


def test_metadata_dropout_asks_the_context_head_at_the_configured_rate(pool: list[Item]) -> None:
    cfg = ModelConfig.tiny()
    rng, gen = np.random.default_rng(2), torch.Generator().manual_seed(2)
    for rate, expected in ((0.0, 0), (1.0, 40)):
        maker = ExampleMaker(pool, cfg, BatchRecipe(metadata_dropout=rate, clean_fraction=1.0,
                                                    crop_min=32, crop_max=48))
        unknown = sum(maker.example(rng, gen).prompt.modality_id == cfg.unknown_modality
                      for _ in range(40))
        assert unknown == expected


def test_excluded_families_are_never_simulated(pool: list[Item]) -> None:
    run = tiny_run(clean_fraction=0.0, exclude_families=["noise"])
    maker = ExampleMaker(pool, run.model, run.data)
    rng, gen = np.random.default_rng(3), torch.Generator().manual_seed(3)
    noise = PHYSICAL_FAMILIES.index("noise")
    assert all(maker.example(rng, gen).severities[noise] == 0 for _ in range(12))


def test_multitask_loss_is_smaller_for_right_answers_than_for_wrong_ones(pool: list[Item]) -> None:
    run = tiny_run()
    b = next(iter(BatchStream(pool, run.model, run.data, seed=4)))
    n, cfg = b.n_slices, run.model

    def outputs(right: bool) -> tuple[torch.Tensor, ...]:
        mod = torch.full((n, len(cfg.modalities)), -5.0)
        ana = torch.full((n, len(cfg.anatomies)), -5.0)
        if right:
            mod[torch.arange(n), b.modality] = 5.0
            ana[torch.arange(n), b.anatomy] = 5.0
            return b.severities.clamp(0.01, 0.99), b.quality, mod, ana
        return (1 - b.severities).clamp(0.01, 0.99), 100 - b.quality, mod, ana

    right, _ = multitask_loss(outputs(True), b, LossWeights())
    wrong, parts = multitask_loss(outputs(False), b, LossWeights())
    assert float(right) < float(wrong)
    assert set(parts) == {"loss", "severity", "quality", "context"}


def test_loss_parts_are_the_plain_means_over_the_slices(pool: list[Item]) -> None:
    run = tiny_run()
    b = next(iter(BatchStream(pool, run.model, run.data, seed=4)))
    n, cfg = b.n_slices, run.model
    g = torch.Generator().manual_seed(0)
    sev = torch.rand(n, len(PHYSICAL_FAMILIES), generator=g).clamp(0.01, 0.99)
    qual = 100 * torch.rand(n, generator=g)
    mod = torch.randn(n, len(cfg.modalities), generator=g)
    ana = torch.randn(n, len(cfg.anatomies), generator=g)
    _, parts = multitask_loss((sev, qual, mod, ana), b, LossWeights())
    assert parts["severity"] == pytest.approx(
        float(torch.nn.functional.binary_cross_entropy(sev, b.severities)), rel=1e-5)
    assert parts["quality"] == pytest.approx(float(torch.nn.functional.smooth_l1_loss(
        qual / 100, b.quality / 100, beta=0.05)), rel=1e-5)


def test_context_loss_grows_when_a_slice_names_the_wrong_modality(pool: list[Item]) -> None:
    run = tiny_run()
    b = next(iter(BatchStream(pool, run.model, run.data, seed=4)))
    n, cfg = b.n_slices, run.model
    assert n >= 2
    mod = torch.full((n, len(cfg.modalities)), -5.0)
    ana = torch.full((n, len(cfg.anatomies)), -5.0)
    mod[torch.arange(n), b.modality] = 5.0
    ana[torch.arange(n), b.anatomy] = 5.0
    right = float(context_loss(mod, ana, b))
    mod[0] = mod[0].flip(0)  # slice 0 now names the wrong modality
    assert float(context_loss(mod, ana, b)) > right + 1.0


def test_learning_rate_warms_up_then_decays_to_the_floor() -> None:
    optim = OptimConfig(warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, 0.0, optim) == pytest.approx(0.1)
    assert lr_factor(9, 0.0, optim) == pytest.approx(1.0)
    assert lr_factor(500, 0.5, optim) == pytest.approx(0.55)
    assert lr_factor(1000, 1.0, optim) == pytest.approx(0.1)


def test_cosine_cycles_restart_at_the_peak_and_each_end_at_the_floor() -> None:
    cyclic = OptimConfig(warmup_steps=1, min_lr_ratio=0.1, cycles=3)
    assert lr_factor(100, 0.0, cyclic) == pytest.approx(1.0)
    assert lr_factor(100, 1 / 6, cyclic) == pytest.approx(0.55)
    assert lr_factor(100, 1 / 3 - 1e-9, cyclic) == pytest.approx(0.1)
    assert lr_factor(100, 1 / 3 + 1e-9, cyclic) == pytest.approx(1.0)
    assert lr_factor(100, 5 / 6, cyclic) == pytest.approx(0.55)
    assert lr_factor(100, 1.0, cyclic) == pytest.approx(0.1)
    one = OptimConfig(warmup_steps=1, min_lr_ratio=0.1)
    for p in (0.0, 0.3, 0.7, 1.0):  # one cycle is the plain cosine
        assert lr_factor(100, p, one) == pytest.approx(0.1 + 0.45 * (1 + np.cos(np.pi * p)))
    assert [cycles_done(p, 3) for p in (0.0, 0.33, 1 / 3, 0.5, 0.99, 1.0, 1.2)] == [
        0, 0, 1, 1, 2, 3, 3]


def test_first_cycle_of_a_cyclic_run_is_a_one_cycle_run_of_that_length() -> None:
    """Why: the seed ensemble ships cycle-1 snapshots of 60-min 3-cycle runs next to 20-min
    one-cycle runs as one recipe; that is only honest if the two schedules are the same."""
    cyclic = OptimConfig(warmup_steps=100, min_lr_ratio=0.05, cycles=3)
    one = OptimConfig(warmup_steps=100, min_lr_ratio=0.05)
    budget = 3600.0
    for step, elapsed in ((0, 0.0), (50, 12.0), (400, 100.0), (2000, 600.0), (4000, 1190.0)):
        long_p = schedule_progress(step, elapsed, 1_000_000, budget)
        short_p = schedule_progress(step, elapsed, 1_000_000, budget / 3)
        assert lr_factor(step, long_p, cyclic) == pytest.approx(lr_factor(step, short_p, one))
    # The long run keeps its cycle-1 snapshot when the short run's schedule ends.
    assert schedule_progress(4000, budget / 3, 1_000_000, budget / 3) == pytest.approx(1.0)
    assert cycles_done(schedule_progress(4000, budget / 3, 1_000_000, budget), 3) == 1


def test_snapshot_ensembles_need_cycles_and_exclude_best_step_selection() -> None:
    base = tiny_run().to_dict()
    with pytest.raises(ValueError, match="cycles >= 2"):
        RunConfig.from_dict({**base, "snapshot_ensemble": True})
    with pytest.raises(ValueError, match="select_best"):
        RunConfig.from_dict({**base, "snapshot_ensemble": True, "select_best": True,
                             "optim": {**base["optim"], "cycles": 2}})
    with pytest.raises(ValueError, match="cycles must be"):
        RunConfig.from_dict({**base, "optim": {**base["optim"], "cycles": 0}})


def test_a_snapshot_run_ships_every_cycle_end_as_one_ensemble_and_resumes(
    pool: list[Item], tmp_path: Path
) -> None:
    from mediqa_train.checkpoints import snapshot_path
    from safetensors.torch import load_file

    from mediqa_cli.model.ensemble import MedIQAEnsemble

    base = tiny_run().to_dict()
    run = RunConfig.from_dict({**base, "snapshot_ensemble": True, "ckpt_every": 1,
                               "val_every": 100, "val_ladders_per_modality": 1,
                               "optim": {**base["optim"], "cycles": 3}})
    out = tmp_path / "run"
    pretrain(run, out, pool, pool, max_steps=6, echo=None)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["snapshot"], r["step"]) for r in rows if "snapshot" in r] == [
        (1, 2), (2, 4), (3, 6)]
    # Lose the last step and its snapshot, as a run cut off at step 5 would; resume.
    ckpts = out / "checkpoints"
    for gone in (ckpts / "step_000006", snapshot_path(out, 3), out / "weights"):
        if gone.is_dir():
            shutil.rmtree(gone)
        else:
            gone.unlink()
    (ckpts / "latest.json").write_text(json.dumps({"path": "step_000005"}))
    assert json.loads((ckpts / "step_000005" / "state.json").read_text())["snapshots"] == 2
    weights = pretrain(run, out, pool, pool, max_steps=6, resume=True, echo=None)
    model, card = load_weights(weights)
    assert isinstance(model, MedIQAEnsemble) and len(model.members) == 3
    assert card["members"] == 3 and card["training"]["snapshot_steps"] == [2, 4, 6]
    assert card["training"]["selected_step"] == 6
    assert card["training"]["selected_weights"].startswith("ensemble of the 3 cycle ends")
    for i, member in enumerate(model.members, start=1):
        saved = load_file(str(snapshot_path(out, i)))
        assert all(torch.equal(member.state_dict()[k], saved[k]) for k in saved)
    first, last = (load_file(str(snapshot_path(out, i))) for i in (1, 3))
    assert any(not torch.equal(first[k], last[k]) for k in first)
    # A run without snapshots cannot become a snapshot ensemble past its first cycle end.
    plain = tmp_path / "plain"
    pretrain(tiny_run(), plain, pool, pool, max_steps=4, echo=None)
    with pytest.raises(ValueError, match="never kept"):
        pretrain(run, plain, pool, pool, max_steps=8, resume=True, echo=None)


def test_run_config_refuses_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown"):
        RunConfig.from_dict({"optim": {"learning_rate": 1.0}})
    with pytest.raises(ValueError, match="unknown"):
        RunConfig.from_dict({"dataa": {}})


def test_shipped_and_smoke_configs_load() -> None:
    shipped = RunConfig.load("shipped")
    assert MedIQANet(shipped.model) is not None
    assert RunConfig.load("smoke").model.width < shipped.model.width


def test_every_config_in_train_configs_loads() -> None:
    """A config named in RESULTS.md or the README must still parse, or its command cannot be
    rerun."""
    folder = Path(__file__).resolve().parents[2] / "train" / "configs"
    names = sorted(p.stem for p in folder.glob("*.json"))
    assert {"shipped", "smoke", "ablation_linear_stem"} <= set(names)
    for name in names:
        assert RunConfig.load(name).model.width > 0


def test_options_removed_after_their_trials_load_only_at_their_shipped_value() -> None:
    """Run configs in older model cards name options that lost their trials, at the value every
    shipped run used: those load; any other value names code that no longer exists."""
    old = RunConfig.load("shipped").to_dict()
    old["ema_decay"] = 0.0
    old["loss"]["rank_by"] = "target"
    old["data"].update(modality_weighting="uniform", content_mix=0.0,
                       borrowed_rank_only=False, full_level_step=False)
    old["model"].update(slice_statistics=False, severity_in_quality=False)
    assert RunConfig.from_dict(old) == RunConfig.load("shipped")
    for where, key, value in (("", "ema_decay", 0.999), ("loss", "rank_by", "soft"),
                              ("data", "content_mix", 0.4), ("data", "full_level_step", True),
                              ("model", "slice_statistics", True)):
        changed = json.loads(json.dumps(old))
        (changed[where] if where else changed)[key] = value
        with pytest.raises(ValueError, match=f"{key}.*removed"):
            RunConfig.from_dict(changed)


def test_smoke_pretraining_checkpoints_resumes_and_writes_verified_weights(
    pool: list[Item], tmp_path: Path
) -> None:
    run = tiny_run()
    out = tmp_path / "run"
    pretrain(run, out, pool, pool, max_steps=2, echo=None)
    state = json.loads((out / "checkpoints" / "step_000002" / "state.json").read_text())
    assert state["step"] == 2
    with pytest.raises(FileExistsError):
        pretrain(run, out, pool, pool, max_steps=4, echo=None)
    weights = pretrain(run, out, pool, pool, max_steps=4, resume=True, echo=None)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if "loss" in r]
    assert steps == [1, 2, 3, 4]  # resumed at 3, not restarted
    assert all(np.isfinite(r["loss"]) for r in rows if "loss" in r)
    assert any("val_quality_srcc" in r for r in rows)
    model, card = load_weights(weights)
    assert card["training"]["steps"] == 4 and "validation" in card
    b = next(iter(BatchStream(pool, run.model, run.data, seed=9)))
    severities, quality = model(*b.packed.args())[:2]
    assert torch.isfinite(quality).all() and ((severities >= 0) & (severities <= 1)).all()


def test_a_group_is_one_crop_at_rising_severity_with_one_prompt(pool: list[Item]) -> None:
    cfg = ModelConfig.tiny()
    maker = ExampleMaker(pool, cfg, BatchRecipe(group_size=3, clean_fraction=1.0, crop_min=32,
                                                crop_max=64, ct_crop_max=48))
    rng, gen = np.random.default_rng(6), torch.Generator().manual_seed(6)
    for g in range(4):
        group = maker.group(rng, gen, g)
        assert len(group) == 3 and {e.group for e in group} == {g}
        assert len({(e.prompt, e.source) for e in group}) == 1
        assert group[0].quality == 100.0 and not group[0].severities.any()  # clean leads
        totals = [float(e.severities.sum()) for e in group]
        assert totals == sorted(totals)


@pytest.mark.parametrize("weight", [0.0, 0.35])
def test_a_shading_group_is_ranked_only_when_the_target_prices_shading(
        pool: list[Item], weight: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """An MR bias field at rising strength: the SSIM-only target (weight 0) moves less than the
    ranking margin, so no pair is ranked; with the shading term most pairs are (levels are
    random, so two can fall too close to rank)."""
    from mediqa_train.degrade import REGISTRY, Chain

    mr = [item for item in pool if item.modality == "MR"]
    maker = ExampleMaker(mr, ModelConfig.tiny(), BatchRecipe(
        group_size=4, clean_fraction=1.0, crop_min=64, crop_max=64, shading_weight=weight))
    bias = REGISTRY["mr_bias"]
    monkeypatch.setattr(maker, "choose_chain", lambda modality, gen, severity=None: Chain(
        [(bias, bias.sample(gen, 1.0))]))
    margin = LossWeights().rank_margin
    ranked = []
    for g in range(3):
        quality = [e.quality for e in maker.group(np.random.default_rng(g),
                                                  torch.Generator().manual_seed(g), g)]
        assert quality == sorted(quality, reverse=True)
        ranked += [a - b > margin for i, a in enumerate(quality) for b in quality[i + 1:]]
    assert (np.mean(ranked) > 0.75) if weight else not any(ranked)


def test_ranking_loss_rewards_the_right_order_within_a_group_only() -> None:
    from mediqa_train.losses import ranking_loss

    target = torch.tensor([100.0, 80.0, 50.0, 90.0])
    group = torch.tensor([0, 0, 0, 1])
    w = LossWeights(rank=1.0)
    right = ranking_loss(torch.tensor([90.0, 70.0, 40.0, 0.0]), target, group, w)
    wrong = ranking_loss(torch.tensor([40.0, 70.0, 90.0, 100.0]), target, group, w)
    assert float(right) < 0.2 < float(wrong)
    alone = ranking_loss(torch.tensor([1.0, 2.0]), torch.tensor([10.0, 90.0]),
                         torch.tensor([0, 1]), w)
    assert float(alone) == 0.0


def test_ranking_on_logits_keeps_its_gradient_where_scores_saturate() -> None:
    """Two versions the network both calls clean (99.8, 99.8) while the target says 100 vs 78:
    on scores the gradient through the sigmoid is 0.8 % of its mid-scale value, on logits it
    is the same as for a tie at 50."""
    from mediqa_train.losses import ranking_loss

    target = torch.tensor([100.0, 78.0])
    group = torch.tensor([0, 0])

    def logit_grad(score: float, w: LossWeights) -> float:
        z = torch.full((2,), float(torch.logit(torch.tensor(score / 100.0))), requires_grad=True)
        ranking_loss(100.0 * torch.sigmoid(z), target, group, w).backward()
        return float(z.grad[1])

    on_scores = LossWeights(rank=1.0)
    on_logits = LossWeights(rank=1.0, rank_on="logit", rank_scale=0.2)
    assert logit_grad(99.8, on_scores) < 0.01 * logit_grad(50.0, on_scores)
    assert logit_grad(99.8, on_logits) == pytest.approx(logit_grad(50.0, on_logits), rel=1e-3)
    assert logit_grad(50.0, on_logits) == pytest.approx(logit_grad(50.0, on_scores), rel=1e-3)
    with pytest.raises(ValueError, match="rank_on"):
        LossWeights(rank_on="level")


def test_grouped_stream_never_splits_a_group_across_batches(pool: list[Item]) -> None:
    run = tiny_run(group_size=3)
    stream = iter(BatchStream(pool, run.model, run.data, seed=8))
    for _ in range(3):
        b = next(stream)
        assert b.group is not None
        _, counts = torch.unique(b.group, return_counts=True)
        assert (counts == 3).all()


def test_best_val_ladder_step_is_the_one_shipped(pool: list[Item], tmp_path: Path) -> None:
    from safetensors.torch import load_file

    run = RunConfig.from_dict({**tiny_run().to_dict(), "val_every": 1,
                               "val_ladders_per_modality": 1, "select_best": True})
    out = tmp_path / "run"
    weights = pretrain(run, out, pool, pool, max_steps=3, echo=None)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if "val_ladder_srcc_modality_mean" in r]
    assert [r["step"] for r in val] == [1, 2, 3]
    assert all(f"val_ladder_srcc_{m}" in val[0] for m in ANATOMY)
    best = max(val, key=lambda r: r["val_ladder_srcc_modality_mean"])
    _, card = load_weights(weights)
    assert card["training"]["selected_step"] == best["step"]
    shipped = load_file(str(weights / "model.safetensors"))
    kept = load_file(str(out / "best_model.safetensors"))
    assert shipped.keys() == kept.keys()
    assert all(torch.equal(shipped[k], kept[k]) for k in shipped)


def test_flip_rotate_keeps_pixels_and_swaps_spacing_on_a_quarter_turn() -> None:
    from mediqa_train.batches import flip_rotate

    image = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    seen_shapes = set()
    for seed in range(16):
        out, spacing = flip_rotate(image, (0.5, 2.0), np.random.default_rng(seed))
        assert sorted(out.flatten().tolist()) == sorted(image.flatten().tolist())
        assert spacing == ((0.5, 2.0) if out.shape == (3, 4) else (2.0, 0.5))
        seen_shapes.add(tuple(out.shape))
    assert seen_shapes == {(3, 4), (4, 3)}


def test_the_shipped_recipe_is_the_one_that_trained_the_shipped_weights() -> None:
    """The documented reproduce command must train the network that ships, with the recipe
    that ships: a run config that leaves a model key out gets the loader's default, which once
    silently dropped PatchPhysics; a recipe edited after training would not reproduce either."""
    weights = Path(__file__).resolve().parents[2] / "weights"
    weights_config = ModelConfig.from_dict(
        json.loads((weights / "config.json").read_text(encoding="utf-8")))
    card = json.loads((weights / "model_card.json").read_text(encoding="utf-8"))
    recipe = RunConfig.load("shipped")
    assert recipe.model == weights_config
    assert recipe == RunConfig.from_dict(card["training"]["run_config"])


def test_warm_start_copies_every_older_tensor_and_keeps_new_modules(tmp_path: Path) -> None:
    from mediqa_train.pretrain import warm_start

    from mediqa_cli.model.weights import save_weights

    torch.manual_seed(0)
    old = MedIQANet(ModelConfig.tiny())
    save_weights(old, tmp_path / "old", name="old", version="0")
    config = ModelConfig.from_dict({**ModelConfig.tiny().to_dict(), "physics_tokens": True})
    new = MedIQANet(config)
    fresh = new.slice_physics.weight.detach().clone()
    warm_start(new, str(tmp_path / "old"), 0, echo=None)
    mine = new.state_dict()
    for key, value in old.state_dict().items():
        torch.testing.assert_close(mine[key], value)
    torch.testing.assert_close(new.slice_physics.weight, fresh)
    wider = MedIQANet(ModelConfig.from_dict({**config.to_dict(), "width": 128, "heads": 4}))
    with pytest.raises(ValueError, match="do not fit"):
        warm_start(wider, str(tmp_path / "old"), 0, echo=None)
    with pytest.raises(ValueError, match="out of range"):
        warm_start(new, str(tmp_path / "old"), 1, echo=None)
