"""Rendering and writing the HTML pages: Jinja2 templates shipped as package data, one file out.

The templates (`mediqa_cli/templates/`) hold all markup, the style sheet and the small table
script; pages are rendered with autoescaping on, and data for the script goes through Jinja's
`tojson` filter, which escapes `<`, `>` and `&`, so a file name such as `</script>.dcm` cannot
break out of the page. Everything is inlined (CSS, script, SVG figures, thumbnails as data:
URIs): a page opens from a file share or a mail attachment with no network.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import mediqa_cli
from mediqa_cli.outputs import OutputError, atomic_write, describe_os_error

GENERATOR = "mediqa"  # <meta name="generator">: how `outputs.is_report` knows our pages


def environment() -> Any:
    """The Jinja2 environment over the package's templates (autoescaped)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("mediqa_cli", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def render(template: str, **context: Any) -> str:
    """Render one page template with the common context (version, time, generator)."""
    page = environment().get_template(template)
    return page.render(
        mediqa_version=mediqa_cli.__version__,
        generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        generator=GENERATOR,
        **context,
    )


def write_page(html: str, out: str | os.PathLike[str]) -> None:
    """Write a page atomically (temporary file + rename); OutputError with one line on failure."""
    target = Path(out)

    def write(tmp: Path) -> None:
        tmp.write_text(html, encoding="utf-8")

    try:
        atomic_write(target, write)
    except OSError as exc:
        raise OutputError(f"cannot write page: {describe_os_error(exc, target)}") from exc
