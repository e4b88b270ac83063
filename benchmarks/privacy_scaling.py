"""Cost of the privacy gate against the number of patients in one run, side by side with an
older tree.

Why: every row passes `Privacy.publish`, which learns the scan's identifying values and scrubs
paths and text cells of all values learnt so far. A gate whose cost per row grows with the
values it holds is quadratic over a night's archive; this prints seconds per run size, so the
slope shows it. Each result is its own patient, study and series (the worst case: an archive of
1,000 studies of 1,000 patients).

Usage: python benchmarks/privacy_scaling.py [--sizes 100,400,1000] [--baseline SRC]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def measure(sizes: list[int]) -> dict[int, float]:
    """Seconds to publish n results, for each n (a fresh gate per size)."""
    from mediqa_cli.privacy import Privacy
    from mediqa_cli.results import ScanResult

    def result(i: int) -> ScanResult:
        return ScanResult(
            scan_id=f"s{i}", paths=(f"/data/study/P{i:05d}/IM.dcm",), status="ok", kind="dicom",
            path=f"/data/study/P{i:05d}/SE{i}/IM_0001.dcm", notes=[f"series {i} of DOE{i}"],
            phi={"PatientName": f"DOE{i}^JOHN{i}", "PatientID": f"P{i:05d}",
                 "PatientBirthDate": "19700101", "AccessionNumber": f"ACC{i:06d}",
                 "StudyDate": "20260101"},
            identity={"StudyInstanceUID": f"1.2.826.0.1.{i}.1", "StationName": f"MR{i % 7}",
                      "SeriesInstanceUID": f"1.2.826.0.1.{i}.2", "InstitutionName": "Hospital"})

    out = {}
    for n in sizes:
        gate = Privacy(["/data/study"], key=b"k" * 32)
        results = [result(i) for i in range(n)]
        start = time.perf_counter()
        rows = [gate.publish(r) for r in results]
        out[n] = time.perf_counter() - start
        assert "DOE" not in json.dumps(rows[-1], default=str)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,400,1000")
    parser.add_argument("--baseline", help="source tree of an older mediqa to run beside")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.json:
        print(json.dumps(measure(sizes)))
        return
    runs = {"this tree": measure(sizes)}
    if args.baseline:
        env = {**os.environ, "PYTHONPATH": os.path.abspath(args.baseline)}
        child = subprocess.run([sys.executable, __file__, "--sizes", args.sizes, "--json"],
                               env=env, capture_output=True, text=True, check=True,
                               cwd=os.path.abspath(args.baseline))
        runs = {"baseline": {int(k): v for k, v in json.loads(child.stdout).items()}, **runs}
    print("| patients in the run | " + " | ".join(runs) + " |")
    print("|---|" + "---|" * len(runs))
    for n in sizes:
        print(f"| {n} | " + " | ".join(f"{r[n]:.2f} s" for r in runs.values()) + " |")


if __name__ == "__main__":
    main()
