"""What the report's score column resolves, against the unrounded score the stick reads.

Why: up to v0.12.0 the stick read the report's two decimals of the raw score, and the report's
calibrated score reached 100.00 at raw 99.99, so clean fundus photographs and the first steps of
their ladders tied in both. Since v0.12.1 the stick reads the unrounded raw score
(`ScanResult.exact_score`), which no user sees: this prints, from one `mediqa-train evaluate`
file, the within-ladder SRCC and cross-image AUC per modality of

- the unrounded raw score (the stick's reading),
- the raw score at two decimals (the stick's reading before v0.12.1),
- the calibrated score at two decimals (the report's `score` column, with the calibration of
  --weights),

so a gap between the first and the last is resolution the report does not carry.

Usage: python benchmarks/report_resolution.py --json weights/metrics/public_evaluation.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from mediqa_train.evaluate import LadderResult, Table, from_jsonable

from mediqa_cli.calibration import Calibration

READINGS = ("raw, unrounded", "raw, 2 decimals", "calibrated, 2 decimals")


def readings(results: list[LadderResult], calibration: Calibration,
             method: str = "model") -> list[LadderResult]:
    """Each ladder with the three readings of `method`'s values as its methods."""
    out = []
    for r in results:
        raw = np.asarray(r.values[method], dtype=np.float64)
        calibrated = np.round(calibration.apply(raw, r.modality), 2)
        values = {READINGS[0]: raw.tolist(), READINGS[1]: np.round(raw, 2).tolist(),
                  READINGS[2]: calibrated.tolist()}
        out.append(LadderResult(r.modality, r.family, r.group, values))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True, help="`mediqa-train evaluate --out`")
    parser.add_argument("--weights", type=Path, default=Path("weights"),
                        help="the folder whose calibration.json the report uses")
    parser.add_argument("--method", default="model", help="which scores of the file")
    args = parser.parse_args(argv)
    calibration = Calibration.load(args.weights)
    if calibration is None:
        parser.error(f"{args.weights}: no calibration.json")
    data = json.loads(args.json.read_text())
    table = Table(readings(from_jsonable(data["ladders"]), calibration, args.method),
                  list(READINGS))
    print(f"{args.json}: {args.method} scores, calibration {calibration.digest}")
    print(f"{'modality':<10}" + "".join(f"{'SRCC ' + r:>30}" for r in READINGS)
          + "".join(f"{'AUC ' + r:>29}" for r in READINGS))
    means = {r: [] for r in READINGS}
    for modality in table.modalities():
        srcc = table.srcc(modality)
        for r in READINGS:
            means[r].append(srcc[r]["mean"])
        print(f"{modality:<10}" + "".join(f"{srcc[r]['mean']:>30.3f}" for r in READINGS)
              + "".join(f"{table.auc(modality, r):>29.3f}" for r in READINGS))
    print(f"{'pooled':<10}" + "".join(
        f"{np.mean([v for v in means[r] if math.isfinite(v)]):>30.3f}" for r in READINGS))


if __name__ == "__main__":
    main()
