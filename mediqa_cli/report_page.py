"""`--html`: one self-contained page for a report (what a physicist reads instead of the CSV).

The page holds: counts and median scores by modality, scanner and protocol; the score
distributions over the grade bands (`mediqa_cli.reportlets`); the whole report as a sortable,
filterable table, paginated in the browser so a 10,000-row report stays responsive (rows are
JSON in the page, the script draws one page of rows at a time); and a card for every scan under
`card_under` or among the `worst` lowest scores (at most `max_cards`), with its thumbnails
(`mediqa_cli.thumbnails`), per-cause severities as bars, IQMs, and the path and pseudonyms that
find it again. It is built from the public rows only: the page shows no value the report does
not hold (thumbnails are pixels, and those of images at risk of burned-in text are withheld).
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mediqa_cli.pages import render, write_page
from mediqa_cli.reportlets import score_histogram, score_violins
from mediqa_cli.results import BY_NAME, IQM_COLUMNS, PHYSICAL_COLUMNS
from mediqa_cli.taxonomy import GRADES, LOW_GRADES
from mediqa_cli.thumbnails import Locator, card_images

# Table columns, in this order, where the report has them (`cause` is derived: the largest
# phys_* severity).
TABLE_COLUMNS: tuple[str, ...] = (
    "path", "status", "modality", "anatomy", "scanner_pseudonym", "protocol_name", "score",
    "grade", "worst_slice_score", "cause", "iqm_snr", "iqm_cnr", "iqm_sharpness", "shape",
    "error", "scan_id",
)
PSEUDONYM_COLUMNS = ("patient_pseudonym", "study_pseudonym", "series_pseudonym",
                     "scanner_pseudonym")
PAGE_ROWS = 100


@dataclass(frozen=True)
class ReportPageOptions:
    """Which scans get a card, and whether images at burned-in-text risk may be shown."""

    worst: int = 12
    card_under: float = 40.0
    max_cards: int = 200
    include_phi: bool = False
    title: str = "MedIQA quality report"
    source: str = ""


def write_report_page(rows: Sequence[Mapping[str, Any]], out: str | os.PathLike[str],
                      locate: Locator | None = None,
                      options: ReportPageOptions | None = None) -> dict[str, int]:
    """Render and write the page; returns counts (rows, cards, thumbnails) for the log line."""
    html, counts = build_report_page(rows, locate, options or ReportPageOptions())
    write_page(html, out)
    return counts


def build_report_page(rows: Sequence[Mapping[str, Any]], locate: Locator | None,
                      options: ReportPageOptions) -> tuple[str, dict[str, int]]:
    """The page's HTML and its counts."""
    scored = [r for r in rows if _number(r.get("score")) is not None]
    figures = []
    by_modality = _group_scores(scored, "modality")
    if scored:
        figures.append(_figure(score_violins(by_modality, "score by modality"), "modality"))
        figures.append(_figure(score_histogram([_number(r.get("score")) or 0.0 for r in scored],
                                               "all scores"), None))
        by_scanner = _group_scores(scored, "scanner_pseudonym")
        if 2 <= len(by_scanner) <= 30:
            figures.append(_figure(score_violins(by_scanner, "score by scanner"),
                                   "scanner_pseudonym"))
    cards = _cards(rows, locate, options)
    card_ids = {card["scan_id"] for card in cards}
    table = _table(rows, card_ids)
    summaries = [
        ("modality", _summary(rows, "modality")),
        ("scanner", _summary(rows, "scanner_pseudonym")),
        ("protocol", _summary(rows, "protocol_name")),
    ]
    statuses = Counter(str(r.get("status") or "") for r in rows)
    html = render(
        "report.html.j2",
        title=options.title,
        source=options.source,
        n_rows=len(rows),
        statuses=dict(statuses),
        median=_median([_number(r.get("score")) for r in scored]),
        summaries=[(name, summary) for name, summary in summaries if summary],
        figures=figures,
        table=table,
        page_rows=PAGE_ROWS,
        cards=cards,
        card_rule=_card_rule(options),
        cards_left_out=max(0, _n_card_candidates(rows, options) - len(cards)),
        grades=[letter for _, letter in GRADES],
    )
    thumbs = sum(len(card["images"].thumbnails) for card in cards)
    return html, {"rows": len(rows), "cards": len(cards), "thumbnails": thumbs}


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _median(values: Sequence[float | None]) -> float | None:
    finite = sorted(v for v in values if v is not None)
    if not finite:
        return None
    mid = len(finite) // 2
    return finite[mid] if len(finite) % 2 else (finite[mid - 1] + finite[mid]) / 2


def _group_scores(rows: Sequence[Mapping[str, Any]], column: str) -> dict[str, list[float]]:
    groups: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        groups[str(row.get(column) or "-")].append(_number(row.get("score")) or 0.0)
    return dict(sorted(groups.items()))


def _figure(reportlet: Any, field: str | None) -> dict[str, Any]:
    geometry = dict(reportlet.geometry)
    geometry["field"] = field
    return {"svg": reportlet.svg, "geometry": geometry}


def _summary(rows: Sequence[Mapping[str, Any]], column: str) -> list[dict[str, Any]]:
    """One line per value of `column`: scans, status counts, median score, grade counts."""
    if not any(row.get(column) for row in rows):
        return []
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[str(row.get(column) or "-")].append(row)
    out = []
    for key in sorted(groups):
        members = groups[key]
        grades = Counter(str(r.get("grade") or "") for r in members)
        scores = [_number(r.get("score")) for r in members]
        scored = [s for s in scores if s is not None]
        out.append({
            "key": key, "n": len(members),
            "ok": sum(r.get("status") == "ok" for r in members),
            "error": sum(r.get("status") == "error" for r in members),
            "skipped": sum(r.get("status") == "skipped" for r in members),
            "median": _median(scores),
            "grades": [grades.get(letter, 0) for _, letter in GRADES],
            "low": (100.0 * sum(grades.get(g, 0) for g in LOW_GRADES) / len(scored)
                    if scored else None),
        })
    return out


def _table(rows: Sequence[Mapping[str, Any]], card_ids: set[str]) -> dict[str, Any]:
    """Columns (key, label, type) and rows as lists, for the page script."""
    present = [c for c in TABLE_COLUMNS
               if c == "cause" or any(row.get(c) is not None for row in rows)]
    columns = [{"key": c, "label": c.replace("_pseudonym", "").replace("_", " "),
                "type": "number" if c != "cause" and BY_NAME[c].dtype in ("float", "int")
                else "text"} for c in present]
    data = []
    for row in rows:
        line = []
        for column in present:
            if column == "cause":
                line.append(_main_cause(row))
                continue
            value = row.get(column)
            if isinstance(value, float):
                value = float(f"{value:.4g}") if math.isfinite(value) else None
            line.append(value)
        data.append(line)
    links = [f"card-{row.get('scan_id')}" if str(row.get("scan_id")) in card_ids else None
             for row in rows]
    return {"columns": columns, "rows": data, "links": links}


def _main_cause(row: Mapping[str, Any]) -> str | None:
    values = [(v, c[5:]) for c in PHYSICAL_COLUMNS if (v := _number(row.get(c))) is not None]
    if not values:
        return None
    value, name = max(values)
    return f"{name} {value:.2f}"


def _card_rule(options: ReportPageOptions) -> str:
    return (f"scans scoring under {options.card_under:g}, and the {options.worst} lowest "
            f"scores (at most {options.max_cards} cards)")


def _card_candidates(rows: Sequence[Mapping[str, Any]],
                     options: ReportPageOptions) -> list[Mapping[str, Any]]:
    scored = sorted((r for r in rows if _number(r.get("score")) is not None),
                    key=lambda r: _number(r.get("score")) or 0.0)
    return [r for i, r in enumerate(scored)
            if i < options.worst or (_number(r.get("score")) or 0.0) < options.card_under]


def _n_card_candidates(rows: Sequence[Mapping[str, Any]], options: ReportPageOptions) -> int:
    return len(_card_candidates(rows, options))


def _cards(rows: Sequence[Mapping[str, Any]], locate: Locator | None,
           options: ReportPageOptions) -> list[dict[str, Any]]:
    from mediqa_cli.thumbnails import CardImages

    cards = []
    for row in _card_candidates(rows, options)[: options.max_cards]:
        images = (card_images(row, locate, options.include_phi) if locate is not None
                  else CardImages(withheld="no images given (mediqa report --images ROOT)"))
        causes = [{"name": c[5:], "value": _number(row.get(c))} for c in PHYSICAL_COLUMNS]
        iqms = [{"name": c[4:], "value": _number(row.get(c))} for c in IQM_COLUMNS]
        cards.append({
            "scan_id": str(row.get("scan_id") or ""),
            "path": row.get("path") or "",
            "score": _number(row.get("score")),
            "grade": row.get("grade") or "",
            "modality": row.get("modality") or "?",
            "anatomy": row.get("anatomy") or "?",
            "shape": row.get("shape") or "",
            "worst_slice": row.get("worst_slice"),
            "worst_slice_score": _number(row.get("worst_slice_score")),
            "pseudonyms": [(c.split("_")[0], row.get(c)) for c in PSEUDONYM_COLUMNS
                           if row.get(c)],
            "protocol": row.get("protocol_name") or row.get("series_description") or "",
            "causes": [c for c in causes if c["value"] is not None],
            "iqms": [q for q in iqms if q["value"] is not None],
            "notes": row.get("notes") or "",
            "images": images,
        })
    return cards
