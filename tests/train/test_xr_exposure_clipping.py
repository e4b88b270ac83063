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
        clipped = [float(c.split()[0]) for c in cells[3:6]]  # +0.6, +1.2, +3.0 EV
        assert clipped == sorted(clipped) and 0.0 < clipped[-1] <= 1.0
        assert all(c.startswith("0.00") for c in cells[6:])  # underexposure never clips high
