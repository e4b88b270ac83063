"""Automatic prompt resolution: override > metadata > the context head's prediction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mediqa_cli.io.scan import Scan
from mediqa_cli.model.config import ModelConfig
from mediqa_cli.model.prompts import request_for_scan, request_prompt, resolve_prompt
from mediqa_cli.taxonomy import ANATOMIES, MODALITIES

CFG = ModelConfig.tiny()


def _scan(**hints: str | None) -> Scan:
    return Scan(scan_id="x", paths=("a.dcm",), kind="dicom", shape=(1, 8, 8),
                spacing=(math.nan,) * 3, read_slice=lambda i: np.zeros((8, 8), np.float32),
                **hints)


def _logits(vocab: tuple[str, ...], best: str, margin: float = 8.0) -> np.ndarray:
    out = np.zeros(len(vocab), dtype=np.float32)
    out[vocab.index(best)] = margin
    return out


def test_dicom_tags_are_used_and_reported_as_their_source() -> None:
    req = request_for_scan(_scan(modality="CT", modality_source="dicom-tag", anatomy="chest",
                                 anatomy_source="dicom-tag"), CFG)
    assert req.modality_id == MODALITIES.index("CT") and req.modality_source == "dicom-tag"
    got = resolve_prompt(req, _logits(MODALITIES, "MR"), _logits(ANATOMIES, "head", 1.0), CFG)
    assert (got.modality, got.modality_source) == ("CT", "dicom-tag")
    assert (got.anatomy, got.anatomy_source) == ("chest", "dicom-tag")


def test_overrides_beat_metadata_and_are_case_insensitive() -> None:
    req = request_for_scan(_scan(modality="CT", modality_source="dicom-tag"), CFG,
                           modality_override="mr", anatomy_override="Head")
    got = resolve_prompt(req, _logits(MODALITIES, "CT"), _logits(ANATOMIES, "chest"), CFG)
    assert (got.modality, got.modality_source) == ("MR", "override")
    assert (got.anatomy, got.anatomy_source) == ("head", "override")
    assert not got.disagrees  # the user said so: no flag


def test_missing_metadata_is_predicted_by_the_context_head() -> None:
    req = request_for_scan(_scan(), CFG)
    assert req.modality_id == CFG.unknown_modality and req.anatomy_id == CFG.unknown_anatomy
    got = resolve_prompt(req, _logits(MODALITIES, "US"), _logits(ANATOMIES, "abdomen"), CFG)
    assert (got.modality, got.modality_source) == ("US", "predicted")
    assert (got.anatomy, got.anatomy_source) == ("abdomen", "predicted")
    assert got.predicted_modality_prob > 0.9


def test_header_and_file_name_hints_keep_their_source() -> None:
    req = request_prompt(CFG, modality="MR", modality_source="header", anatomy="head",
                         anatomy_source="file-name")
    got = resolve_prompt(req, _logits(MODALITIES, "MR"), _logits(ANATOMIES, "head"), CFG)
    assert (got.modality_source, got.anatomy_source) == ("header", "file-name")


def test_a_confident_contradiction_is_flagged_but_metadata_still_wins() -> None:
    req = request_prompt(CFG, modality="CT", modality_source="dicom-tag")
    got = resolve_prompt(req, _logits(MODALITIES, "FUNDUS", 12.0), _logits(ANATOMIES, "eye"), CFG)
    assert got.modality == "CT" and got.predicted_modality == "FUNDUS" and got.disagrees
    mild = resolve_prompt(req, _logits(MODALITIES, "FUNDUS", 1.0), _logits(ANATOMIES, "eye"), CFG)
    assert not mild.disagrees


def test_bad_override_names_the_choices_and_auto_means_unset() -> None:
    with pytest.raises(ValueError, match="unknown modality 'PET'.*CT"):
        request_prompt(CFG, modality_override="PET")
    req = request_prompt(CFG, modality="XR", modality_source="dicom-tag", modality_override="auto")
    assert req.modality_id == MODALITIES.index("XR")


def test_reader_hint_outside_the_vocabulary_counts_as_unknown() -> None:
    req = request_prompt(CFG, modality="PT-CT-fusion", modality_source="dicom-tag")
    assert req.modality_id == CFG.unknown_modality and req.modality_source == "none"


def test_task_prompt_defaults_to_expert() -> None:
    assert request_prompt(CFG).task_id == CFG.tasks.index("expert")
    assert request_prompt(CFG, task="physical").task_id == CFG.tasks.index("physical")
