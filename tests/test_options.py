"""One options object for the command, its config file and the Python API: declared once,
checked once, with defaults < config file < flags."""

from __future__ import annotations

import shutil
from pathlib import Path

import mediqa
import pytest
import typer
from typer.testing import CliRunner

import mediqa_cli.runner as runner_module
from mediqa_cli.cli import app
from mediqa_cli.options import DEFAULTS, OPTION_NAMES, OptionError, ScoreOptions, read_config
from tests.packaged import packaged_dicom

cli = CliRunner()


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> list[runner_module.ScoreRequest]:
    """The requests `mediqa score` builds, without running them."""
    seen: list[runner_module.ScoreRequest] = []

    def keep(request: runner_module.ScoreRequest) -> int:
        seen.append(request)
        return 0

    monkeypatch.setattr(runner_module, "run_score", keep)
    return seen


def _score_params() -> dict[str, object]:
    command = typer.main.get_command(app).commands["score"]  # type: ignore[attr-defined]
    return {p.name: p.default for p in command.params
            if p.name not in ("paths", "out", "config")}


def test_every_score_flag_is_one_option_field_with_the_same_default():
    params = _score_params()
    assert set(params) == set(OPTION_NAMES)
    for name, default in params.items():
        assert default == getattr(DEFAULTS, name), name


def test_config_file_gives_defaults_and_flags_given_win(tmp_path: Path, requests):
    config = tmp_path / "mediqa.toml"
    config.write_text('max-slices = 4\nmodality = "ct"\nworkers = 0\nfail_under = 40\n'
                      'log-format = "json"\nlog-file = "logs/nightly.log"\ninclude-phi = true\n')
    result = cli.invoke(app, ["score", str(tmp_path), "--out", "r.csv", "--config", str(config),
                              "--max-slices", "2", "--no-include-phi"])
    assert result.exit_code == 0, result.output
    (request,) = requests
    assert request.max_slices == 2 and request.include_phi is False  # flags win
    assert request.modality == "CT" and request.workers == 0 and request.fail_under == 40.0
    assert request.log_format == "json"
    assert request.log_file == str(tmp_path / "logs" / "nightly.log")  # from the file's folder
    # A flag left at its default does not hide the file's value (views stays the default).
    assert request.views == DEFAULTS.views


def test_unknown_config_key_is_a_usage_error_naming_the_key(tmp_path: Path, requests):
    config = tmp_path / "mediqa.toml"
    config.write_text("max-slices = 4\nmax-slice = 2\n")
    result = cli.invoke(app, ["score", str(tmp_path), "--out", "r.csv", "--config", str(config)])
    assert result.exit_code == 2
    assert "'max-slice'" in result.output and not requests


@pytest.mark.parametrize("text, words", [
    ('views = 3\n', ["views", "3"]),
    ('max-slices = "eight"\n', ["max_slices", "integer"]),
    ('include-phi = 1\n', ["include_phi", "true or false"]),
    ('out = "r.csv"\n', ["'out'", "command line"]),
    ('max-slices = \n', ["not valid TOML"]),
])
def test_bad_config_values_are_usage_errors_naming_key_and_file(
    tmp_path: Path, requests, text: str, words: list[str]
):
    config = tmp_path / "nightly.toml"
    config.write_text(text)
    result = cli.invoke(app, ["score", str(tmp_path), "--out", "r.csv", "--config", str(config)])
    assert result.exit_code == 2 and not requests
    output = " ".join(result.output.split())  # Typer wraps long messages
    for word in [*words, "nightly.toml"]:
        assert word in output


def test_flags_and_python_calls_are_checked_by_the_same_code(tmp_path: Path, requests):
    for flags in (["--views", "3"], ["--max-slices", "0"], ["--modality", "XYZ"],
                  ["--fail-under", "101"], ["--device", "tpu"], ["--log-format", "xml"]):
        result = cli.invoke(app, ["score", str(tmp_path), "--out", "r.csv", *flags])
        assert result.exit_code == 2, flags
    assert not requests
    with pytest.raises(OptionError, match="views"):
        list(mediqa.score(tmp_path, views=3))
    with pytest.raises(OptionError, match="'XYZ'"):
        ScoreOptions(modality="XYZ")
    assert ScoreOptions(modality="mr", anatomy="HEAD", deid="STRICT").modality == "MR"


def test_python_api_takes_an_options_object_or_keywords_but_no_report_options(tmp_path: Path):
    shutil.copy(packaged_dicom("CT_small.dcm"), tmp_path / "ct.dcm")
    config = tmp_path / "mediqa.toml"
    config.write_text('modality = "MR"\nmax-slices = 2\nlog-file = "x.log"\n')
    options = ScoreOptions(**read_config(config))  # the cron job's file, in a notebook
    (result,) = list(mediqa.score(tmp_path / "ct.dcm", options))
    assert (result.modality, result.modality_source) == ("MR", "override")
    assert result.options == options.key() and "max_slices=2" in result.options
    (again,) = list(mediqa.score(tmp_path / "ct.dcm", options, modality="CT"))
    assert again.modality == "CT"
    with pytest.raises(TypeError, match="log_file"):
        mediqa.score(tmp_path, log_file="x.log")
    with pytest.raises(TypeError, match="unexpected keyword"):
        mediqa.score(tmp_path, max_slice=2)


def test_options_are_frozen():
    with pytest.raises(AttributeError):
        DEFAULTS.max_slices = 2  # type: ignore[misc]
