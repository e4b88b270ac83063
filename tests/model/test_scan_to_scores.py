"""The whole model path for one real scan, as the engine drives it: Scan -> per-slice outputs."""

from __future__ import annotations

from pathlib import Path

import nibabel
import numpy as np
import torch

from mediqa_cli.io.scan import Scan
from mediqa_cli.model import MedIQANet, ModelConfig, pack, request_for_scan, resolve_prompt, unpack
from mediqa_cli.preprocess import preprocess_slice
from mediqa_cli.saliency import select_patches, select_slices, thumbnail

ANATOMICAL = Path(nibabel.__file__).parent / "tests" / "data" / "anatomical.nii"


def _head_scan() -> Scan:
    vol = np.asarray(nibabel.load(ANATOMICAL).dataobj, dtype=np.float32)
    padded = np.concatenate([np.zeros((*vol.shape[:2], 6), np.float32), vol], axis=2)
    return Scan(scan_id="head", paths=(str(ANATOMICAL),), kind="nifti",
                shape=(padded.shape[2], *padded.shape[:2]), spacing=(2.0, 2.0, 2.0),
                read_slice=lambda i: padded[:, :, i], anatomy="head", anatomy_source="file-name")


def test_a_scan_goes_from_slices_to_scores_and_named_prompts() -> None:
    cfg = ModelConfig.tiny()
    torch.manual_seed(0)
    model = MedIQANet(cfg).eval()
    scan = _head_scan()

    sel = select_slices([thumbnail(s) for s in scan.iter_slices()], scan.modality, k=4)
    tokens = [preprocess_slice(img, scan.modality, scan.spacing[1:], max_patches=64,
                               value_range=sel.value_range)
              for img in scan.iter_slices(sel.indices)]
    keep = select_patches(tokens, keep=4, seeds=[int(i) for i in sel.indices])
    tokens = [t.take(p.indices) for t, p in zip(tokens, keep)]
    request = request_for_scan(scan, cfg)
    with torch.inference_mode():
        outs = unpack(model(*pack(tokens, [request] * len(tokens), cfg).args()))

    assert len(outs) == 4 and all(i >= 6 for i in sel.indices)  # no empty padding slice
    volume_score = float(np.dot(sel.weights, [o.quality for o in outs]))
    assert 0.0 <= volume_score <= 100.0
    prompt = resolve_prompt(request, np.mean([o.modality_logits for o in outs], axis=0),
                            np.mean([o.anatomy_logits for o in outs], axis=0), cfg)
    assert prompt.modality_source == "predicted" and prompt.modality in cfg.modalities
    assert (prompt.anatomy, prompt.anatomy_source) == ("head", "file-name")
