"""MedIQANet on packed batches: contracts, packing invariance, prompts, fine-tuning hooks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mediqa_cli.model.config import ModelConfig
from mediqa_cli.model.network import MedIQANet, count_parameters
from mediqa_cli.model.packing import pack, unpack
from mediqa_cli.model.prompts import PromptRequest
from mediqa_cli.preprocess import SliceTokens, patchify

CFG = ModelConfig.tiny()
UNKNOWN = PromptRequest(CFG.unknown_modality, "none", CFG.unknown_anatomy, "none")


@pytest.fixture(scope="module")
def model() -> MedIQANet:
    torch.manual_seed(0)
    return MedIQANet(CFG).eval()


def _slices() -> list[SliceTokens]:
    """Mixed sizes and spacings, including a one-patch slice and an unknown spacing."""
    rng = np.random.default_rng(0)
    shapes = [(64, 48), (16, 16), (40, 120), (90, 33)]
    spacings = [(0.5, 0.5), (float("nan"), float("nan")), (2.0, 1.0), (0.3, 0.3)]
    return [patchify(rng.random((*s, 3), dtype=np.float32), sp) for s, sp in zip(shapes, spacings)]


def _prompts(n: int) -> list[PromptRequest]:
    known = [PromptRequest(1, "dicom-tag", 0, "dicom-tag"), UNKNOWN,
             PromptRequest(0, "override", CFG.unknown_anatomy, "none", task_id=1)]
    return [known[i % len(known)] for i in range(n)]


def test_outputs_have_per_slice_shapes_dtypes_and_ranges(model: MedIQANet) -> None:
    items = _slices()
    with torch.inference_mode():
        sev, quality, mod_logits, anat_logits, mod_used, anat_used = model(
            *pack(items, _prompts(len(items)), CFG).args()
        )
    s = len(items)
    assert sev.shape == (s, len(CFG.families)) and sev.dtype == torch.float32
    assert quality.shape == (s,) and mod_logits.shape == (s, len(CFG.modalities))
    assert anat_logits.shape == (s, len(CFG.anatomies))
    assert mod_used.dtype == torch.int64 and anat_used.shape == (s,)
    assert ((sev >= 0) & (sev <= 1)).all() and ((quality >= 0) & (quality <= 100)).all()
    assert torch.isfinite(sev).all() and torch.isfinite(quality).all()


def test_packing_together_equals_scoring_each_slice_alone(model: MedIQANet) -> None:
    items, prompts = _slices(), _prompts(4)
    with torch.inference_mode():
        together = unpack(model(*pack(items, prompts, CFG).args()))
        order = [2, 0, 3, 1]
        shuffled = unpack(model(*pack([items[i] for i in order], [prompts[i] for i in order],
                                      CFG).args()))
        for i, item in enumerate(items):
            alone = unpack(model(*pack([item], [prompts[i]], CFG).args()))[0]
            mixed = shuffled[order.index(i)]
            for got in (together[i], mixed):
                np.testing.assert_allclose(got.severities, alone.severities, atol=1e-4)
                assert got.quality == pytest.approx(alone.quality, abs=1e-4)
                np.testing.assert_allclose(got.modality_logits, alone.modality_logits, atol=1e-4)
                assert got.modality_id == alone.modality_id


def test_known_prompts_pass_through_and_unknown_ones_take_the_prediction(
    model: MedIQANet,
) -> None:
    items = _slices()[:3]
    with torch.inference_mode():
        out = unpack(model(*pack(items, _prompts(3), CFG).args()))
    assert (out[0].modality_id, out[0].anatomy_id) == (1, 0)
    assert out[1].modality_id == int(np.argmax(out[1].modality_logits))
    assert out[1].anatomy_id == int(np.argmax(out[1].anatomy_logits))
    assert out[2].modality_id == 0 and out[2].anatomy_id == int(np.argmax(out[2].anatomy_logits))


def test_the_prompt_changes_the_score(model: MedIQANet) -> None:
    item = _slices()[0]
    with torch.inference_mode():
        ct = unpack(model(*pack([item], [PromptRequest(0, "x", 2, "x")], CFG).args()))[0]
        mr = unpack(model(*pack([item], [PromptRequest(1, "x", 2, "x")], CFG).args()))[0]
    assert not np.allclose(ct.severities, mr.severities)


def test_spacing_is_seen_and_unknown_spacing_is_finite(model: MedIQANet) -> None:
    base = _slices()[0]
    fine = SliceTokens(base.patches, base.coords, base.grid, (0.2, 0.2))
    coarse = SliceTokens(base.patches, base.coords, base.grid, (3.0, 3.0))
    unknown = SliceTokens(base.patches, base.coords, base.grid, (float("nan"), 0.0))
    with torch.inference_mode():
        out = unpack(model(*pack([fine, coarse, unknown], [UNKNOWN] * 3, CFG).args()))
    assert not np.allclose(out[0].severities, out[1].severities)
    assert np.isfinite(out[2].severities).all()


def test_position_is_resolution_independent_frame(model: MedIQANet) -> None:
    """Coordinates outside [0, 1] clamp to the frame instead of indexing out of the table."""
    coords = torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.5, -0.2]])
    pos = model.position(coords)
    torch.testing.assert_close(pos[2], model.position(torch.tensor([[1.0, 0.0]]))[0])
    assert pos.shape == (3, CFG.width)


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(1)
    net = MedIQANet(CFG)
    items = _slices()
    sev, quality, mod_logits, anat_logits, _, _ = net(*pack(items, _prompts(4), CFG).args())
    (sev.sum() + quality.sum() + mod_logits.logsumexp(1).sum()
     + anat_logits.logsumexp(1).sum()).backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None]
    # unknown spacing is used by slice 1; every prompt row cannot be hit by one batch
    assert all(n.startswith("prompts.") for n in dead), dead


def test_expert_query_starts_as_the_mixture_of_physical_queries() -> None:
    net = MedIQANet(CFG)
    mix = torch.zeros(len(CFG.families))
    mix[0], mix[3] = 3.0, 1.0
    net.init_expert_query_from_physical(mix)
    q = net.queries()
    torch.testing.assert_close(q[1], 0.75 * net.family_queries[0] + 0.25 * net.family_queries[3],
                               atol=1e-5, rtol=1e-5)
    expected_w = -(0.75 * net.family_weight[0] + 0.25 * net.family_weight[3])
    torch.testing.assert_close(net.quality_head.weight[0], expected_w, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError):
        net.init_expert_query_from_physical(torch.zeros(len(CFG.families)))


def test_freezing_the_encoder_leaves_prompts_queries_and_heads_trainable() -> None:
    net = MedIQANet(CFG)
    net.freeze_encoder()
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert "family_queries" in trainable and "prompts.modality.weight" in trainable
    assert "quality_head.weight" in trainable and "expert_mix" in trainable
    assert not any(n.startswith(("blocks.", "context_blocks.", "patch_embed.")) for n in trainable)


def test_default_config_is_a_few_million_parameters() -> None:
    n = count_parameters(MedIQANet(ModelConfig()))
    assert 1_000_000 < n < 5_000_000


@pytest.mark.parametrize("kwargs", [{"width": 200, "heads": 4}, {"width": 96, "heads": 2},
                                    {"context_depth": 9}])
def test_config_rejects_shapes_the_kernels_cannot_run(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        ModelConfig(**kwargs)


def test_config_json_round_trip_is_strict() -> None:
    cfg = ModelConfig.tiny()
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({**cfg.to_dict(), "widht": 3})


def test_options_removed_after_their_trials_load_only_at_their_shipped_value() -> None:
    saved = {**ModelConfig.tiny().to_dict(), "slice_statistics": False,
             "severity_in_quality": False}
    assert ModelConfig.from_dict(saved) == ModelConfig.tiny()
    with pytest.raises(ValueError, match="severity_in_quality.*removed"):
        ModelConfig.from_dict({**saved, "severity_in_quality": True})


def test_configs_saved_before_patch_physics_load_without_it() -> None:
    old = {k: v for k, v in ModelConfig.tiny().to_dict().items() if k != "patch_physics"}
    assert ModelConfig.from_dict(old).patch_physics is False
    assert "physics.stats_fc1.weight" not in MedIQANet(ModelConfig.from_dict(old)).state_dict()
    assert ModelConfig.from_dict(ModelConfig.tiny().to_dict()).patch_physics is True
