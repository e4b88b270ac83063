"""benchmarks/xr_exposure_clipping.py: the clipped fraction of XR slices per exposure error."""

from __future__ import annotations

from pathlib import Path

import pytest
from mediqa_train.corpus import build_corpus

from tests.benchmark_scripts import load_benchmark


def test_one_row_per_xr_slice_and_overexposure_clips_more_with_dose(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "corpus"
    build_corpus(str(corpus), sources=["pydicom:RG3_UNCR", "pydicom:CT_small"], max_side=64,
                 seed=0, log=lambda _: None)
    script = load_benchmark("xr_exposure_clipping")
    assert script.main(["--corpus", str(corpus)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and "RG3_UNCR" in line]
    assert len(rows) == 4  # the one radiograph is cut into four regions; CT gets no row
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        over = [float(c.split()[0]) for c in cells[3:6]]  # +0.6, +1.2, +3.0 EV
        under = [float(c.split()[0]) for c in cells[6:]]  # -1.2, -3.0 EV
        assert over == sorted(over) and over[-1] > over[0]  # more dose, more clipped
        assert over[0] > 0.2  # this radiograph's bright half sits near the clip level
        assert max(under) < 0.05  # less dose: (almost) nothing reaches saturation


def test_the_clipped_fraction_counts_pixels_at_the_saturation_level_only() -> None:
    import torch
    from mediqa_train.degrade.base import robust_max
    from mediqa_train.degrade.xray import XRExposureParams

    script = load_benchmark("xr_exposure_clipping")
    clean = torch.linspace(0, 1, 1000).reshape(10, 100)
    params = XRExposureParams(1.0, 1.2, 12)
    full = 1.2 * float(robust_max(clean))
    out = torch.minimum(clean * 2.0, torch.tensor(full))
    expected = float((clean * 2.0 >= full).float().mean())
    assert 0.3 < expected < 0.5
    assert abs(script.clipped_fraction(clean, out, params) - expected) < 0.002
    assert script.clipped_fraction(clean, clean, params) == 0.0  # bright but never clipped
