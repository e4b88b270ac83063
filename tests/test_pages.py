"""The HTML pages, opened in a real headless browser (Debian's chromium via Selenium): no
console errors, the table sorts and pages, the expected cards and thumbnails, a non-blank
screenshot; and, without a browser, what the page may and may not hold."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mediqa_cli.cli import app
from mediqa_cli.exit_codes import EXIT_INPUT, EXIT_OK, EXIT_OUTPUT
from mediqa_cli.report_page import PAGE_ROWS, ReportPageOptions, build_report_page
from mediqa_cli.reports import read_rows
from tests import browser
from tests.packaged import packaged_dicom
from tests.test_trends import _history

runner = CliRunner()


@pytest.fixture(scope="module")
def chrome(tmp_path_factory: pytest.TempPathFactory):
    reason = browser.missing()
    if reason:
        pytest.skip(f"no headless browser: {reason}")
    driver = browser.start(tmp_path_factory.mktemp("chrome-profile"))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small archive scored with --html and --history: an MR series (thumbnails), a CT
    slice (one thumbnail) and an ultrasound image (withheld: burned-in annotation risk)."""
    import numpy as np
    import pydicom

    from mediqa_cli.demo import write_dicom_series

    root = tmp_path_factory.mktemp("pages")
    archive = root / "archive"
    volume = pydicom.dcmread(packaged_dicom("emri_small.dcm")).pixel_array.astype(np.int16)
    write_dicom_series(volume, archive / "mr", modality="MR", body_part="HEAD", seed=1,
                       patient_name="DOE^JANE", patient_id="PID12345",
                       tags={"StationName": "MRSTATION7", "ProtocolName": "T1 brain"})
    (archive / "ct").mkdir()
    shutil.copy(packaged_dicom("CT_small.dcm"), archive / "ct" / "ct.dcm")
    (archive / "us").mkdir()
    shutil.copy(packaged_dicom("US1_J2KR.dcm"), archive / "us" / "us.dcm")
    report, page, db = root / "report.csv", root / "report.html", root / "qa.sqlite"
    result = runner.invoke(app, ["score", str(archive), "--out", str(report), "--workers", "0",
                                 "--html", str(page), "--history", str(db)])
    assert result.exit_code == EXIT_OK, result.output
    return {"root": root, "archive": archive, "report": report, "page": page, "history": db}


def test_score_html_page_in_a_browser(scored: dict[str, Path], chrome, tmp_path: Path):
    errors = browser.console_errors(browser.open_page(chrome, scored["page"]))
    assert errors == []
    rows = list(read_rows(scored["report"], "csv"))
    assert len(chrome.find_elements("css selector", "#scans tbody tr")) == len(rows) == 3
    assert len(chrome.find_elements("css selector", "article.card")) == 3  # worst 12 = all
    thumbs = chrome.find_elements("css selector", "article.card img.thumb")
    withheld = chrome.find_elements("css selector", "article.card .withheld")
    assert len(withheld) == 1 and "ultrasound" in withheld[0].text
    mr_row = next(r for r in rows if r["modality"] == "MR")
    assert len(thumbs) == 1 + min(4, len(mr_row["salient_slices"]))  # CT: 1; MR: up to 4
    assert all(t.get_attribute("naturalWidth") != "0" for t in thumbs)
    _check_sorts(chrome, "#scans", "score")
    png = chrome.get_screenshot_as_png()
    (tmp_path / "report.png").write_bytes(png)
    assert not browser.screenshot_is_blank(png)


def _check_sorts(chrome, section: str, key: str) -> None:
    """Clicking a header sorts by it (ascending, then descending), numbers as numbers."""
    header = chrome.find_element("css selector", f"{section} th[data-key={key}] button")
    index = [th.get_attribute("data-key") for th in
             chrome.find_elements("css selector", f"{section} thead th")].index(key)

    def column() -> list[float]:
        selector = f"{section} tbody tr td:nth-child({index + 1})"
        cells = chrome.find_elements("css selector", selector)
        return [float(c.text) for c in cells if c.text]

    header.click()
    ascending = column()
    assert ascending == sorted(ascending) and len(ascending) >= 2
    header.click()
    descending = column()  # the first page of the other order
    assert descending == sorted(descending, reverse=True) and descending[0] >= ascending[-1]


def test_ten_thousand_row_page_is_paginated_sortable_and_filterable(chrome, tmp_path: Path):
    import random

    rng = random.Random(0)
    rows = []
    for i in range(10_000):
        score = round(rng.uniform(5, 100), 2)
        rows.append({"scan_id": f"{i:016x}", "path": f"archive/scan{i:05d}.dcm", "status": "ok",
                     "modality": rng.choice(["CT", "MR", "XR"]), "anatomy": "head",
                     "score": score, "grade": "A" if score >= 80 else "D" if score < 40 else "B",
                     "scanner_pseudonym": f"scanner-{i % 7:016x}", "phys_noise": 0.2})
    html, counts = build_report_page(rows, None, ReportPageOptions(max_cards=50))
    page = tmp_path / "big.html"
    page.write_text(html, encoding="utf-8")
    assert counts["cards"] == 50
    assert browser.console_errors(browser.open_page(chrome, page)) == []
    assert len(chrome.find_elements("css selector", "#scans tbody tr")) == PAGE_ROWS
    _check_sorts(chrome, "#scans", "score")
    search = chrome.find_element("css selector", "#scans input.mq-filter")
    search.send_keys("scan00042")
    assert len(chrome.find_elements("css selector", "#scans tbody tr")) == 1
    assert "1 of 10000 rows" in chrome.find_element("css selector", "#scans .mq-count").text


def test_trends_page_in_a_browser(chrome, tmp_path: Path):
    db = _history(tmp_path, degrade=True)
    page = tmp_path / "trends.html"
    result = runner.invoke(app, ["trends", str(db), "--html", str(page)])
    assert result.exit_code == 7, result.output
    assert browser.console_errors(browser.open_page(chrome, page)) == []
    sections = chrome.find_elements("css selector", "section.group-section")
    assert len(sections) == 2 and len(chrome.find_elements("css selector", ".trend svg")) == 2
    assert "ALERT" in sections[0].text
    _check_sorts(chrome, "#overview", "median")
    png = chrome.get_screenshot_as_png()
    assert not browser.screenshot_is_blank(png)


def test_page_is_self_contained_and_holds_no_identifying_tag(scored: dict[str, Path]):
    import re

    html = scored["page"].read_text(encoding="utf-8")
    text = re.sub(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+", "", html)
    for loads in ('src="http', "src='http", 'href="http', "url(http", "<link", "@import",
                  "fetch(", "XMLHttpRequest"):
        assert loads not in html
    assert "Content-Security-Policy" in html
    for marker in ("DOE", "JANE", "PID12345", "MRSTATION7", str(scored["archive"])):
        assert marker not in text


def test_hostile_file_names_cannot_break_out_of_the_page():
    rows = [{"scan_id": "1", "path": "</script><script>alert(1)</script>.dcm", "status": "ok",
             "score": 20.0, "grade": "D", "modality": "MR", "notes": "<b>x</b>"}]
    html, _ = build_report_page(rows, None, ReportPageOptions())
    assert "<script>alert(1)" not in html and "<b>x</b>" not in html


def test_history_recorded_by_score_is_read_by_trends(scored: dict[str, Path]):
    result = runner.invoke(app, ["trends", str(scored["history"])])
    assert result.exit_code == EXIT_OK, result.output
    assert "learning" in result.output  # one night: no baseline yet


def test_report_command_exit_codes_and_burned_in_rule(scored: dict[str, Path], tmp_path: Path):
    page = tmp_path / "r.html"
    args = ["report", str(scored["report"]), "--html", str(page), "--images",
            str(scored["archive"].parent)]
    assert runner.invoke(app, args).exit_code == EXIT_OK
    html = page.read_text(encoding="utf-8")
    assert html.count('class="thumb"') >= 2 and "ultrasound (burned-in" in html
    assert runner.invoke(app, args + ["--include-phi"]).exit_code == EXIT_OK
    assert "ultrasound (burned-in" not in page.read_text(encoding="utf-8")
    missing = ["report", str(tmp_path / "none.csv"), "--html", str(page)]
    assert runner.invoke(app, missing).exit_code == EXIT_INPUT
    other = tmp_path / "notes.html"
    other.write_text("<html>someone's page</html>")
    refused = ["report", str(scored["report"]), "--html", str(other)]
    assert runner.invoke(app, refused).exit_code == EXIT_OUTPUT
    assert other.read_text() == "<html>someone's page</html>"


def test_burned_in_annotation_yes_withholds_the_thumbnail(tmp_path: Path):
    import pydicom

    from mediqa_cli.thumbnails import burned_in_risk

    source = tmp_path / "ct.dcm"
    ds = pydicom.dcmread(packaged_dicom("CT_small.dcm"))
    assert burned_in_risk([packaged_dicom("CT_small.dcm")], "CT") is None
    ds.BurnedInAnnotation = "YES"
    ds.save_as(source)
    assert burned_in_risk([str(source)], "CT") == "BurnedInAnnotation=YES"
