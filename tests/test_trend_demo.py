"""`mediqa demo --trends`: the model-scored synthetic history alerts on the degrading scanner
only, within a few nights of the first degraded night."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mediqa_cli.cli import app
from mediqa_cli.history import load_scans
from mediqa_cli.trends import group_trends

runner = CliRunner()


@pytest.mark.slow
def test_demo_trends_flags_the_degrading_scanner_only(tmp_path: Path):
    out = tmp_path / "demo_trends"
    result = runner.invoke(app, ["demo", "--trends", "--data-dir", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "trends.html").stat().st_size > 10_000
    degrading = next(line.split()[0] for line in result.output.splitlines()
                     if "(the degrading one)" in line)
    trends = {t.scanner: t for t in group_trends(load_scans(out / "qa.sqlite"))}
    assert len(trends) == 3
    assert trends[degrading].alerts
    assert all(not t.alerts for name, t in trends.items() if name != degrading)
    # Degradation starts on 2026-01-23; some chart must alarm within three nights.
    assert trends[degrading].since is not None and trends[degrading].since <= "2026-01-26"
