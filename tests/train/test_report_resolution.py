"""benchmarks/report_resolution.py: the three readings of one file's scores."""

from __future__ import annotations

import json
from pathlib import Path

from mediqa_train.evaluate import LadderResult, to_jsonable

from mediqa_cli.calibration import Calibration, ScaleMap
from tests.benchmark_scripts import load_benchmark


def test_ties_at_two_decimals_of_the_raw_score_are_apart_in_the_calibrated_report(
        tmp_path: Path, capsys) -> None:
    """A ladder of v0.12.0's (fold 3, fundus illumination) whose steps differ in the third and
    fourth decimal of the raw score: two decimals of the raw score tie four of them, the
    calibrated report keeps them apart."""
    resolution = load_benchmark("report_resolution")
    raw = [99.9917, 99.9914, 99.9903, 99.9873, 99.9809, 99.9271]
    ladders = [LadderResult("FUNDUS", "illumination", f"g-{k}", {"model": raw})
               for k in range(3)]
    Calibration({"*": ScaleMap((6.7, 3.9, 1.5))}).save(tmp_path)
    read = resolution.readings(ladders, Calibration.load(tmp_path))[0].values
    assert read["raw, 2 decimals"][:4] == [99.99] * 4 and read["raw, unrounded"] == raw
    calibrated = read["calibrated, 2 decimals"]
    assert all(a > b for a, b in zip(calibrated, calibrated[1:]))
    path = tmp_path / "eval.json"
    path.write_text(json.dumps({"ladders": to_jsonable(ladders)}))
    resolution.main(["--json", str(path), "--weights", str(tmp_path)])
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("FUNDUS"))
    exact, rounded, report = (float(v) for v in line.split()[1:4])
    assert exact == report == 1.0 and rounded < 0.9
