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
        distinct_at_3ev = int(cells[5].split()[1].strip("()"))
        assert over == sorted(over) and over[-1] > over[0]  # more dose, more saturated
        assert over[-1] < 0.6  # the dense parts keep their detail at +3 EV
        assert distinct_at_3ev > 100  # no ladder step collapses to a flat image
        assert max(under) < 0.05  # less dose: (almost) nothing reaches saturation


def test_the_clipped_fraction_counts_pixels_at_the_saturation_level_only() -> None:
    import torch
    from mediqa_train.degrade.xray import XRExposure, XRExposureParams

    script = load_benchmark("xr_exposure_clipping")
    sim = XRExposure()
    clean = torch.linspace(0, 1000, 1000).reshape(10, 100)
    params = XRExposureParams(1.0, 1.0, 12)
    level = sim.saturated_grey(clean, params)
    out = torch.maximum(clean, torch.tensor(level))
    expected = float((clean <= level).float().mean())
    assert 0.1 < expected < 0.4
    assert abs(script.clipped_fraction(clean, out, params) - expected) < 0.002
    darker = torch.full_like(clean, level - 50.0)  # darker than saturation, so not clipped
    assert script.clipped_fraction(clean, darker, params) == 0.0
