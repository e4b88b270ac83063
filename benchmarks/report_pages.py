"""How long a 10,000-row report takes to become a page, how big the page is, and how the
browser copes (load, sort, filter) - the "renders in seconds, stays responsive" check.

Rows are synthetic but complete (every schema column a report has without --include-phi);
cards get no thumbnails (decoding is the scoring path's cost, not the page's). The browser part
runs in Debian's headless chromium when it is installed (tests/browser.py).

    .venv/bin/python benchmarks/report_pages.py              # 10,000 rows
    .venv/bin/python benchmarks/report_pages.py --rows 50000
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mediqa_cli.report_page import ReportPageOptions, build_report_page  # noqa: E402
from mediqa_cli.results import COLUMNS, IQM_COLUMNS, PHYSICAL_COLUMNS  # noqa: E402
from mediqa_cli.taxonomy import grade_for  # noqa: E402


def synthetic_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        score = min(100.0, max(0.0, rng.gauss(78, 14)))
        row = {c: None for c in COLUMNS}
        row.update({"scan_id": f"{i:016x}", "path": f"archive/2026-11/{i // 40:04d}/IM{i:06d}.dcm",
                    "status": "ok" if rng.random() > 0.01 else "error",
                    "modality": rng.choice(["CT", "MR", "XR", "US", "NM"]), "anatomy": "head",
                    "scanner_pseudonym": f"scanner-{rng.randrange(12):016x}",
                    "protocol_name": rng.choice(["T1 SE", "T2 FSE", "Head CT", "Chest PA"]),
                    "patient_pseudonym": f"pat-{rng.getrandbits(64):016x}",
                    "score": round(score, 2), "grade": grade_for(score), "shape": "1x512x512",
                    "n_slices": 1, "rows": 512, "cols": 512, "salient_slices": [0],
                    "worst_slice": 0, "worst_slice_score": round(score, 2)})
        row.update({c: round(rng.random() * 0.5, 4) for c in PHYSICAL_COLUMNS})
        row.update({c: round(rng.random() * 50, 3) for c in IQM_COLUMNS})
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    rows = synthetic_rows(args.rows)
    build_report_page(rows[:10], None, ReportPageOptions())  # imports, font cache: not timed
    started = time.perf_counter()
    html, counts = build_report_page(rows, None, ReportPageOptions())
    seconds = time.perf_counter() - started
    folder = Path(tempfile.mkdtemp(prefix="mediqa-page-bench-"))
    page = folder / "report.html"
    page.write_text(html, encoding="utf-8")
    svg = sum(len(part.split("</svg>")[0]) for part in html.split("<svg")[1:])
    print("| rows | build s | page MB | of which SVG kB | cards |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {counts['rows']} | {seconds:.2f} | {len(html.encode()) / 1e6:.2f} | "
          f"{svg / 1e3:.0f} | {counts['cards']} |")
    from tests import browser

    reason = browser.missing()
    if reason:
        print(f"\n(browser part skipped: {reason})")
        return
    driver = browser.start(folder / "profile")
    try:
        started = time.perf_counter()
        browser.open_page(driver, page)
        load = time.perf_counter() - started
        timing = driver.execute_script("""
            var t0 = performance.now();
            document.querySelector('#scans th[data-key=score] button').click();
            var t1 = performance.now();
            var box = document.querySelector('#scans input.mq-filter');
            box.value = 'IM0042'; box.dispatchEvent(new Event('input'));
            var t2 = performance.now();
            return [t1 - t0, t2 - t1, document.querySelectorAll('#scans tbody tr').length];
        """)
    finally:
        driver.quit()
    print("\n| load to ready s | sort ms | filter ms | rows drawn |")
    print("|---:|---:|---:|---:|")
    print(f"| {load:.2f} | {timing[0]:.0f} | {timing[1]:.0f} | {timing[2]} |")


if __name__ == "__main__":
    main()
