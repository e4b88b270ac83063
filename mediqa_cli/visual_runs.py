"""The page and history steps of the CLI, with their exit codes: `mediqa report`, `mediqa trends`,
and what `mediqa score --html/--history` does after the report is written.

Kept apart from cli.py (which only parses options) for the reason runner.py is: tests and other
front ends run exactly what the commands run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mediqa_cli.exit_codes import EXIT_INPUT, EXIT_OK, EXIT_OUTPUT, EXIT_TREND_ALERT, EXIT_USAGE
from mediqa_cli.outputs import OutputError, target_problem

log = logging.getLogger("mediqa")


@dataclass
class ReportPageRequest:
    """`mediqa report REPORT --html OUT`: which report, where, which cards, images from where."""

    report: str
    html: str
    images: str | None = None
    worst: int = 12
    card_under: float = 40.0
    max_cards: int = 200
    include_phi: bool = False
    force: bool = False


def run_report_page(request: ReportPageRequest) -> int:
    """Read a report of any format and write its page; the documented exit code."""
    from mediqa_cli.report_page import ReportPageOptions, write_report_page
    from mediqa_cli.reports import infer_format, read_rows
    from mediqa_cli.thumbnails import locate_under

    source = Path(request.report)
    try:
        fmt = infer_format(request.report, None)
    except ValueError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    if not source.is_file():
        log.error("report not found: %s", source)
        return EXIT_INPUT
    try:
        rows = [dict(row) for row in read_rows(source, fmt)]
    except Exception as exc:  # noqa: BLE001 - any unreadable report is an input problem
        log.error("cannot read the report %s: %s", source, exc)
        return EXIT_INPUT
    if not rows or "scan_id" not in rows[0]:
        log.error("%s holds no MedIQA report rows", source)
        return EXIT_INPUT
    inputs = [request.report] + ([request.images] if request.images else [])
    problem = target_problem(Path(request.html), "html", inputs, request.force)
    if problem:
        log.error("cannot write the page: %s", problem)
        return EXIT_OUTPUT
    options = ReportPageOptions(worst=request.worst, card_under=request.card_under,
                                max_cards=request.max_cards, include_phi=request.include_phi,
                                source=source.name)
    locate = locate_under(request.images) if request.images else None
    try:
        counts = write_report_page(rows, request.html, locate, options)
    except OutputError as exc:
        log.error("%s", exc)
        return EXIT_OUTPUT
    log.info("page with %d rows, %d cards, %d thumbnails -> %s", counts["rows"], counts["cards"],
             counts["thumbnails"], request.html)
    return EXIT_OK


def check_score_targets(html: str | None, history: str | None, inputs: Sequence[str],
                        force: bool) -> str | None:
    """Before a score run reads anything: can its page and history be written? (one line)"""
    if html:
        problem = target_problem(Path(html), "html", inputs, force)
        if problem:
            return problem
    if history:
        # --force never applies: a history that is not ours is someone's database.
        problem = target_problem(Path(history), "sqlite", inputs, False)
        if problem:
            return problem
    return None


def after_score(rows: Sequence[Mapping[str, Any]], html: str | None, history: str | None,
                paths_by_scan: Mapping[str, Sequence[str]], include_phi: bool,
                inputs: Sequence[str] = ()) -> int:
    """`mediqa score --history/--html`: record the run, write its page (EXIT_OUTPUT on failure).

    Thumbnails come from the raw paths this run read (`paths_by_scan`); they never reach the
    page, only the pixels and the public row do.
    """
    if history:
        from mediqa_cli.history import HistoryError, record_run

        try:
            recorded = record_run(history, rows)
        except HistoryError as exc:
            log.error("%s", exc)
            return EXIT_OUTPUT
        log.info("history: night %s, %d row(s), %d new scan(s) -> %s", recorded.night,
                 recorded.n_rows, recorded.n_new, history)
    if html:
        from mediqa_cli.report_page import ReportPageOptions, write_report_page
        from mediqa_cli.thumbnails import locate_from

        try:
            counts = write_report_page(rows, html, locate_from(paths_by_scan, inputs),
                                       ReportPageOptions(include_phi=include_phi))
        except OutputError as exc:
            log.error("%s", exc)
            return EXIT_OUTPUT
        log.info("page with %d cards, %d thumbnails -> %s", counts["cards"],
                 counts["thumbnails"], html)
    return EXIT_OK


@dataclass
class TrendsRequest:
    """`mediqa trends DB`: the history, an optional page, the baseline and the first night."""

    history: str
    html: str | None = None
    baseline_nights: int = 10
    since: str | None = None
    force: bool = False


def run_trends(request: TrendsRequest, echo: Any = print) -> int:
    """Print the trend table; write the page; EXIT_TREND_ALERT when a group is in alert."""
    from mediqa_cli.drift import ChartSettings
    from mediqa_cli.history import HistoryError, load_scans
    from mediqa_cli.trends import any_alert, format_table, group_trends

    if not os.path.isfile(request.history):
        log.error("history not found: %s", request.history)
        return EXIT_INPUT
    try:
        scans = load_scans(request.history, request.since)
    except HistoryError as exc:
        log.error("%s", exc)
        return EXIT_INPUT
    if request.html:
        problem = target_problem(Path(request.html), "html", [request.history], request.force)
        if problem:
            log.error("cannot write the page: %s", problem)
            return EXIT_OUTPUT
    settings = ChartSettings(baseline_nights=request.baseline_nights)
    trends = group_trends(scans, settings)
    if not trends:
        log.warning("the history holds no scored scans%s",
                    f" since {request.since}" if request.since else "")
    else:
        echo(format_table(trends))
    if request.html:
        from mediqa_cli.trends_page import write_trends_page

        try:
            write_trends_page(trends, scans, request.html, settings,
                              source=os.path.basename(request.history))
        except OutputError as exc:
            log.error("%s", exc)
            return EXIT_OUTPUT
        log.info("trends page with %d group(s) -> %s", len(trends), request.html)
    if any_alert(trends):
        alerts = sum(bool(t.alerts) for t in trends)
        log.warning("%d scanner x protocol group(s) in alert", alerts)
        return EXIT_TREND_ALERT
    return EXIT_OK
