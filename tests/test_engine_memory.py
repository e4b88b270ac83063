"""The engine streams: peak memory does not grow with the length of a series."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np


def _peak_rss_mb(path: Path, out: Path) -> float:
    """Peak resident memory (MB) of a `mediqa score` child process on one volume."""
    script = (
        "import resource, sys\n"
        "from mediqa_cli.runner import ScoreRequest, run_score\n"
        f"code = run_score(ScoreRequest(paths=[{str(path)!r}], out={str(out)!r}, workers=0,"
        " quiet=True))\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1]) / 1024.0


def _volume(path: Path, slices: int) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:256, :256]
    body = ((yy - 128) ** 2 + (xx - 128) ** 2 < 100**2).astype(np.float32) * 400.0
    data = np.empty((256, 256, slices), np.float32)
    for z in range(slices):
        data[..., z] = body + rng.normal(0, 20, (256, 256)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 1.0, 1.0])), path)


def test_peak_memory_is_flat_in_series_length(tmp_path: Path):
    short, long = tmp_path / "short.nii", tmp_path / "long.nii"
    _volume(short, 8)
    _volume(long, 640)  # 160 MB of voxels
    base = _peak_rss_mb(short, tmp_path / "a.csv")
    peak = _peak_rss_mb(long, tmp_path / "b.csv")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0
    # A reader that loaded the volume would need +160 MB; streaming stays within ~+60 MB.
    assert peak - base < 60, (base, peak)
