"""Discovery and readers: paths in, Scans (and problem rows) out."""

from mediqa_cli.io.discovery import InputPathError, discover, read_files
from mediqa_cli.io.scan import Scan, ScanProblem

__all__ = ["InputPathError", "Scan", "ScanProblem", "discover", "read_files"]
