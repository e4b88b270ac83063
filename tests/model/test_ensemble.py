"""Ensembles of independently trained networks: averaging, weights files, compiled forms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mediqa_cli.model.config import ModelConfig
from mediqa_cli.model.ensemble import MedIQAEnsemble, assemble, members_of
from mediqa_cli.model.export import export_model, script_model
from mediqa_cli.model.network import MedIQANet
from mediqa_cli.model.packing import example_batch
from mediqa_cli.model.weights import CARD_FILE, WeightsError, load_weights, save_weights

CFG = ModelConfig.tiny()


def _members(n: int = 2) -> list[MedIQANet]:
    torch.manual_seed(0)
    return [MedIQANet(CFG).eval() for _ in range(n)]


def test_ensemble_outputs_are_the_members_means_and_its_own_context_guess() -> None:
    members = _members(3)
    ensemble = MedIQAEnsemble.of(members)
    batch = example_batch(CFG, (5, 9, 3, 7))
    with torch.no_grad():
        outs = [m(*batch.args()) for m in members]
        sev, quality, mod_logp, anat_logp, mod_used, anat_used = ensemble(*batch.args())
    torch.testing.assert_close(quality, sum(o[1] for o in outs) / 3)
    torch.testing.assert_close(sev, sum(o[0] for o in outs) / 3)
    want_logp = sum(torch.log_softmax(o[2], dim=1) for o in outs) / 3
    torch.testing.assert_close(mod_logp, want_logp)
    # The batch asks the context head (unknown prompts): the guess is the ensemble's argmax.
    assert torch.equal(mod_used, want_logp.argmax(dim=1))
    assert torch.equal(anat_used, anat_logp.argmax(dim=1))
    assert len({tuple(o[1].tolist()) for o in outs}) == 3  # the members really differ


def test_known_prompts_pass_through_the_ensemble() -> None:
    ensemble = MedIQAEnsemble.of(_members())
    batch = example_batch(CFG, (5, 9))
    batch.modality = torch.tensor([1, 2])
    batch.anatomy = torch.tensor([0, 3])
    with torch.no_grad():
        out = ensemble(*batch.args())
    assert out[4].tolist() == [1, 2] and out[5].tolist() == [0, 3]


def test_one_network_stays_itself_and_mixed_configs_are_refused() -> None:
    single = _members(1)[0]
    assert assemble([single]) is single and members_of(single) == [single]
    other = MedIQANet(ModelConfig.tiny().__class__(**{**CFG.to_dict(), "depth": 3})).eval()
    with pytest.raises(ValueError, match="share one model config"):
        MedIQAEnsemble.of([single, other])
    with pytest.raises(ValueError, match="at least 2"):
        MedIQAEnsemble(CFG, 1)


def test_ensemble_weights_round_trip_and_the_card_says_how_many(tmp_path: Path) -> None:
    ensemble = MedIQAEnsemble.of(_members())
    folder = save_weights(ensemble, tmp_path / "ens", version="e1")
    loaded, card = load_weights(folder)
    assert isinstance(loaded, MedIQAEnsemble) and card["members"] == 2
    assert card["parameters"] == 2 * sum(p.numel() for p in MedIQANet(CFG).parameters())
    batch = example_batch(CFG, (4, 6))
    with torch.no_grad():
        assert torch.equal(loaded(*batch.args())[1], ensemble(*batch.args())[1])
    single = save_weights(_members(1)[0], tmp_path / "one", version="s1")
    assert "members" not in json.loads((single / CARD_FILE).read_text())


def test_a_card_whose_member_count_does_not_match_the_file_is_refused(tmp_path: Path) -> None:
    folder = save_weights(MedIQAEnsemble.of(_members()), tmp_path / "ens", version="e1")
    card = json.loads((folder / CARD_FILE).read_text())
    for wrong, message in ((3, "holds 2 network.s. but .* says members=3"),
                           (1, "holds 2 network.s. but .* says members=1"),
                           (0, "positive integer")):
        (folder / CARD_FILE).write_text(json.dumps({**card, "members": wrong}))
        with pytest.raises(WeightsError, match=message):
            load_weights(folder)


def test_ensemble_scripts_and_exports_like_eager() -> None:
    ensemble = MedIQAEnsemble.of(_members())
    batch = example_batch(CFG, (5, 16, 2))
    batch.max_seqlen = 16
    with torch.no_grad():
        want = ensemble(*batch.args())[1]
        torch.testing.assert_close(script_model(ensemble)(*batch.args())[1], want)
        program = export_model(ensemble, 16).module()
        torch.testing.assert_close(program(*batch.args())[1], want, atol=1e-5, rtol=1e-5)
