"""The options of `mediqa score`, declared once: the command, its config file and `mediqa.score`.

Why one object: an option that the command, `--config mediqa.toml` and the Python API each
declared on their own would drift (a default changed in one place, a check forgotten in
another). `ScoreOptions` is a frozen dataclass: each field is one option with its default, and
`__post_init__` is the one place that checks and normalises values, whoever built the object.
The command's Typer parameters carry the help text and take their defaults from `DEFAULTS`;
adding an option is a field here plus its Typer parameter.

Precedence: the field's default, then the config file, then a flag given on the command line.
"""

from __future__ import annotations

import math
import os
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from mediqa_cli.taxonomy import ANATOMIES, MODALITIES

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
BACKENDS: tuple[str, ...] = ("eager", "compile", "torchscript", "export")
# The network's CPU arithmetic (mediqa_cli.model.precision, which reads this tuple).
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
DEID_MODES: tuple[str, ...] = ("default", "strict")
LOG_FORMATS: tuple[str, ...] = ("text", "json")

# Field metadata: "scope" is "scoring" for options that change how scans are scored (the API
# takes them) and "command" for what the command does with the results (reports, logs);
# "path" marks file names (relative ones in a config file are read from the file's folder).
_SCORING = {"scope": "scoring"}
_COMMAND = {"scope": "command"}
_COMMAND_PATH = {"scope": "command", "path": True}


class OptionError(ValueError):
    """A bad option value or config key; the message is one line for the user."""

    def __init__(self, option: str, detail: str) -> None:
        super().__init__(f"{option}: {detail}")
        self.option, self.detail = option, detail

    @property
    def flag(self) -> str:
        """The command-line spelling (`--max-slices`), for usage errors."""
        return "--" + self.option.replace("_", "-")


@dataclass(frozen=True, kw_only=True)
class ScoreOptions:
    """Every option of `mediqa score` except PATHS, --out and --config (README "Options")."""

    # How scans are scored (the command and `mediqa.score`). workers=None: the command starts
    # one decoder per two cores (at most 4); the Python API decodes in the calling process.
    workers: int | None = field(default=None, metadata=_SCORING)
    device: str = field(default="auto", metadata=_SCORING)
    backend: str = field(default="eager", metadata=_SCORING)
    precision: str = field(default="auto", metadata=_SCORING)  # the network's CPU arithmetic
    views: int = field(default=1, metadata=_SCORING)
    modality: str | None = field(default=None, metadata=_SCORING)
    anatomy: str | None = field(default=None, metadata=_SCORING)
    max_slices: int = field(default=8, metadata=_SCORING)
    # What the command writes.
    format: str | None = field(default=None, metadata=_COMMAND)
    hdf5: str | None = field(default=None, metadata=_COMMAND_PATH)
    html: str | None = field(default=None, metadata=_COMMAND_PATH)  # the report's page
    history: str | None = field(default=None, metadata=_COMMAND_PATH)  # SQLite quality history
    ray: str | None = field(default=None, metadata=_COMMAND)  # Ray address; "auto": joined one
    resume: bool = field(default=False, metadata=_COMMAND)
    fail_under: float | None = field(default=None, metadata=_COMMAND)
    include_phi: bool = field(default=False, metadata=_COMMAND)
    deid: str = field(default="default", metadata=_COMMAND)
    pseudonym_key: str | None = field(default=None, metadata=_COMMAND_PATH)
    force: bool = field(default=False, metadata=_COMMAND)
    quiet: bool = field(default=False, metadata=_COMMAND)
    verbose: int = field(default=0, metadata=_COMMAND)
    log_file: str | None = field(default=None, metadata=_COMMAND_PATH)
    log_format: str = field(default="text", metadata=_COMMAND)

    # Scans per packed model batch: the engine's, not the user's (tests lower it).
    batch_scans: ClassVar[int] = 16

    def __post_init__(self) -> None:
        for spec in fields(ScoreOptions):
            value = getattr(self, spec.name)
            if spec.metadata.get("path") and isinstance(value, os.PathLike):
                value = os.fspath(value)
                self._set(spec.name, value)
            _check_type(spec.name, value, _hints()[spec.name])
        self._set("device", _choice("device", self.device, DEVICES))
        self._set("backend", _choice("backend", self.backend, BACKENDS))
        self._set("precision", _choice("precision", self.precision, PRECISIONS))
        if self.precision == "bf16" and (self.backend != "eager" or self.device == "cuda"):
            raise OptionError("precision", "bf16 is for the eager backend on the CPU "
                              f"(got --backend {self.backend} --device {self.device})")
        self._set("modality", _choice("modality", self.modality, MODALITIES))
        self._set("anatomy", _choice("anatomy", self.anatomy, ANATOMIES))
        self._set("deid", _choice("deid", self.deid, DEID_MODES))
        self._set("log_format", _choice("log_format", self.log_format, LOG_FORMATS))
        if self.views != 1:  # 1 (as is) is always valid; views.py imports torch
            from mediqa_cli.views import VIEW_COUNTS

            if self.views not in VIEW_COUNTS:
                raise OptionError("views", f"{self.views} is not one of {VIEW_COUNTS}")
        if self.max_slices < 1:
            raise OptionError("max_slices", f"{self.max_slices} is below 1")
        if self.workers is not None and self.workers < 0:
            raise OptionError("workers", f"{self.workers} is below 0")
        if self.verbose < 0:
            raise OptionError("verbose", f"{self.verbose} is below 0")
        if self.fail_under is not None and not (
            math.isfinite(self.fail_under) and 0 <= self.fail_under <= 100
        ):
            raise OptionError("fail_under", f"{self.fail_under} is not within 0..100")

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)

    def key(self) -> str:
        """The options a row depends on, as written in its `options` column: --resume reuses
        a row only when they are the same (the model version is compared on its own).

        Backend, views and precision are not here: the model version names what they change
        (`+torchscript`, `+views4`, `+bf16`), and only the version can say what `auto`
        precision became on the machine that scored the row."""
        privacy = "phi" if self.include_phi else self.deid
        return (f"max_slices={self.max_slices};modality={self.modality or 'auto'};"
                f"anatomy={self.anatomy or 'auto'};privacy={privacy}")

    def values(self) -> dict[str, Any]:
        """Field name -> value (what `ScoreOptions(**values)` rebuilds)."""
        return {name: getattr(self, name) for name in OPTION_NAMES}


OPTION_NAMES: tuple[str, ...] = tuple(spec.name for spec in fields(ScoreOptions))
SCORING_OPTIONS: frozenset[str] = frozenset(
    spec.name for spec in fields(ScoreOptions) if spec.metadata["scope"] == "scoring"
)


def _hints() -> dict[str, Any]:
    """The fields' types, evaluated once (the annotations are strings here)."""
    if not _HINTS:
        _HINTS.update(typing.get_type_hints(ScoreOptions))
    return _HINTS


_HINTS: dict[str, Any] = {}


def _choice(name: str, value: str | None, allowed: tuple[str, ...]) -> str | None:
    """The allowed spelling of `value` (case-insensitive), None for None."""
    if value is None:
        return None
    for choice in allowed:
        if value.lower() == choice.lower():
            return choice
    raise OptionError(name, f"{value!r} is not one of {', '.join(allowed)}")


def _check_type(name: str, value: object, hint: object) -> None:
    """Values from a config file or a Python call have the field's type (bool is not int)."""
    allowed = typing.get_args(hint) if typing.get_origin(hint) is not None else (hint,)
    for kind in allowed:
        if kind is type(None) and value is None:
            return
        if kind is bool and isinstance(value, bool):
            return
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return
        if kind is str and isinstance(value, str):
            return
    words = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    wanted = " or ".join(words[k] for k in allowed if k in words)
    raise OptionError(name, f"{value!r} should be {wanted}")


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Options from a TOML file (keys as the flags are spelt, `max-slices` or `max_slices`).

    An unknown key is an error that names it: a misspelt key silently ignored would leave a
    nightly job running with a default nobody chose. Relative file names are read from the
    config file's folder, so a cron job finds them whatever its working folder.
    """
    source = Path(path)
    try:
        with open(source, "rb") as handle:
            data = _toml().load(handle)
    except OSError as exc:
        raise OptionError("config", f"cannot read {source}: {exc.strerror or exc}") from exc
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise OptionError("config", f"{source} is not valid TOML: {exc}") from exc
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in OPTION_NAMES:
            where = " (give it on the command line)" if name in ("paths", "out", "config") else ""
            raise OptionError("config", f"unknown key {key!r} in {source}{where}")
        if _is_path(name) and isinstance(value, str) and value:
            value = str(source.parent / Path(value).expanduser())
        values[name] = value
    try:
        ScoreOptions(**values)
    except OptionError as exc:
        raise OptionError(exc.option, f"{exc.detail} (key {exc.option!r} in {source})") from exc
    return values


def merge(given: Mapping[str, Any], config: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Option values: defaults, then the config file's, then the flags `given` (names as fields)."""
    unknown = sorted(set(given) - set(OPTION_NAMES))
    if unknown:
        raise OptionError(unknown[0], f"unknown option {unknown[0]!r}")
    values = read_config(config) if config is not None else {}
    values.update(given)
    return values


def _is_path(name: str) -> bool:
    return next(spec for spec in fields(ScoreOptions) if spec.name == name).metadata.get(
        "path", False)


def _toml() -> Any:
    """The stdlib TOML reader (Python 3.11+), else tomli on 3.10."""
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    import tomli  # pyproject: a dependency on Python < 3.11

    return tomli


DEFAULTS = ScoreOptions()

__all__ = ["DEFAULTS", "OPTION_NAMES", "OptionError", "ScoreOptions", "merge", "read_config"]
