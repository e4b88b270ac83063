"""`import mediqa`: the Python API under the name users type (installed from this folder).

    import mediqa
    results = list(mediqa.score("scans/", max_slices=4))
    frame = mediqa.read_report("report.csv")
"""

from mediqa_cli import __version__
from mediqa_cli.api import OptionError, ScoreOptions, read_config, read_report, score
from mediqa_cli.results import SCHEMA, ScanResult

__all__ = [
    "SCHEMA",
    "OptionError",
    "ScanResult",
    "ScoreOptions",
    "__version__",
    "read_config",
    "read_report",
    "score",
]
