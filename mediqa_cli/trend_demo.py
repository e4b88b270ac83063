"""`mediqa demo --trends`: a synthetic 30-night history in which one scanner slowly degrades.

Real slices from installed packages (pydicom's and pydicom-data's MR and CT test images) play
the patients: every night each of three scanners acquires a few of them, with a random crop,
flip and gain, written as single-slice DICOM files carrying the scanner's StationName, serial
number and protocol. From night `DEGRADE_FROM` on, scanner "DEMO-MR-2" gets receiver noise
through the project's own MR simulator (`mediqa_train.degrade.mr.MRNoise`: complex Gaussian
noise in k-space, Rician in the image), its severity rising by `NOISE_STEP` a night. All nights
are scored in one engine run (one model load), published through the privacy gate, recorded in
`qa.sqlite` night by night, and `mediqa trends` runs on it: the table is printed and
`trends.html` written. The simulator needs only torch, which the CLI has anyway.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import defaultdict
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from mediqa_cli.exit_codes import EXIT_OK, EXIT_WEIGHTS

log = logging.getLogger("mediqa")

NIGHTS = 30
FIRST_NIGHT = date(2026, 1, 5)
DEGRADE_FROM = 18  # 0-based night index where DEMO-MR-2 starts to degrade
NOISE_STEP = 0.06  # MRNoise severity added per night from DEGRADE_FROM (0.66 on the last night)
SCANS_PER_NIGHT = 3
SIZE = 128  # slices are resampled to SIZE x SIZE px: a minute on a laptop CPU for 270 scans

# (station, serial, modality, protocol, source pool)
SCANNERS: tuple[tuple[str, str, str, str, str], ...] = (
    ("DEMO-MR-1", "SN-1001", "MR", "T1 SE brain", "MR"),
    ("DEMO-MR-2", "SN-1002", "MR", "T1 SE brain", "MR"),
    ("DEMO-CT-1", "SN-2001", "CT", "Head CT", "CT"),
)
DEGRADING = "DEMO-MR-2"


def source_slices() -> dict[str, list[np.ndarray]]:
    """Real MR and CT slices from pydicom's test data, in physical units, SIZE x SIZE."""
    from pydicom.data import get_testdata_file

    from mediqa_cli.io.dicom import decode_dicom_slice

    pools: dict[str, list[np.ndarray]] = {"MR": [], "CT": []}
    for pool, name, frames in (("MR", "MR_small.dcm", None), ("MR", "emri_small.dcm", 10),
                               ("MR", "MR-SIEMENS-DICOM-WithOverlays.dcm", None),
                               ("MR", "MR2_UNCR.dcm", None), ("CT", "CT_small.dcm", None),
                               ("CT", "693_UNCR.dcm", None)):
        try:
            path = get_testdata_file(name)
        except Exception:  # noqa: BLE001 - pydicom-data files are optional
            path = None
        if not path:
            continue
        for frame in range(frames) if frames else [None]:
            pixels = decode_dicom_slice(str(path), frame)
            if pixels.ndim == 2:
                pools[pool].append(_resize(pixels, SIZE))
    return pools


def _resize(pixels: np.ndarray, size: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))[None, None]
    mode = "area" if pixels.shape[0] >= size else "bilinear"
    return F.interpolate(t, size=(size, size), mode=mode)[0, 0].numpy()


def _patient(rng: np.random.Generator, pool: list[np.ndarray]) -> np.ndarray:
    """One 'patient': a random source slice, cropped (85-100 %), maybe flipped, gain 0.9-1.1."""
    image = pool[int(rng.integers(len(pool)))]
    keep = rng.uniform(0.85, 1.0)
    side = max(16, int(round(SIZE * keep)))
    top, left = rng.integers(0, SIZE - side + 1, size=2)
    crop = image[top:top + side, left:left + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return _resize(crop, SIZE) * float(rng.uniform(0.9, 1.1))


def _degrade(image: np.ndarray, severity: float, seed: int) -> np.ndarray:
    """Receiver noise through the project's MR simulator (Rician in the magnitude image)."""
    import torch
    from mediqa_train.degrade.mr import MRNoise

    simulator = MRNoise()
    rng = torch.Generator().manual_seed(seed)
    params = simulator.sample(rng, severity)
    noisy = simulator.apply(torch.from_numpy(np.ascontiguousarray(image)), (1.0, 1.0), params,
                            rng)
    return noisy.numpy()


def build_nights(root: Path, seed: int = 0) -> dict[str, str]:
    """Write every night's scans under root/<night>/<station>/; returns folder -> night."""
    from mediqa_cli.demo import write_dicom_series

    if root.exists():
        shutil.rmtree(root)
    pools = source_slices()
    rng = np.random.default_rng(seed)
    nights: dict[str, str] = {}
    for index in range(NIGHTS):
        night = (FIRST_NIGHT + timedelta(days=index)).isoformat()
        nights[night] = night
        for station, serial, modality, protocol, pool in SCANNERS:
            for scan in range(SCANS_PER_NIGHT):
                image = _patient(rng, pools[pool])
                if station == DEGRADING and index >= DEGRADE_FROM:
                    severity = min(1.0, NOISE_STEP * (index - DEGRADE_FROM + 1))
                    image = _degrade(np.maximum(image, 0.0), severity, seed * 100_000 + index * 10
                                     + scan)
                if modality == "CT":
                    data = np.clip(np.round(image), -1024, 3071).astype(np.int16)
                else:
                    data = np.clip(np.round(image), 0, 65535).astype(np.uint16)
                write_dicom_series(
                    data[None], root / night / station / f"scan{scan}", modality=modality,
                    seed=int(rng.integers(1 << 30)), body_part="HEAD",
                    patient_name=f"Demo^Patient{index:02d}{scan}{station[-1]}",
                    patient_id=f"DEMO-{index:02d}-{station}-{scan}",
                    tags={"StationName": station, "DeviceSerialNumber": serial,
                          "ProtocolName": protocol, "Manufacturer": "MedIQA demo"})
    return nights


def run_trend_demo(out_dir: Path, echo: Callable[[str], object] = print, seed: int = 0) -> int:
    """Build, score and record the synthetic history, then print the trends and write the page."""
    from mediqa_cli.engine import EngineOptions, run
    from mediqa_cli.history import record_run
    from mediqa_cli.io import discover
    from mediqa_cli.privacy import Privacy, load_key
    from mediqa_cli.runner import ScoreRequest, load_scorer
    from mediqa_cli.visual_runs import TrendsRequest, run_trends

    scans_dir = out_dir / "scans"
    database = out_dir / "qa.sqlite"
    page = out_dir / "trends.html"
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        stale.unlink(missing_ok=True)
    log.info("demo trends: writing %d nights x %d scanners x %d scans under %s", NIGHTS,
             len(SCANNERS), SCANS_PER_NIGHT, scans_dir)
    build_nights(scans_dir, seed)
    scorer = load_scorer(ScoreRequest(paths=[], out="-"))
    if scorer is None:
        log.error("demo trends needs the model weights (none installed)")
        return EXIT_WEIGHTS
    privacy = Privacy([str(scans_dir)], key=load_key(None))
    by_night: dict[str, list[dict]] = defaultdict(list)
    options = EngineOptions(workers=0, max_slices=1)
    log.info("demo trends: scoring %d scans", NIGHTS * len(SCANNERS) * SCANS_PER_NIGHT)
    for result in run(discover([str(scans_dir)]), options, scorer):
        night = Path(os.path.relpath(result.paths[0], scans_dir)).parts[0]
        by_night[night].append(privacy.publish(result))
    for night in sorted(by_night):
        record_run(database, by_night[night], night)
    log.info("demo trends: %s degrades from %s (receiver noise, +%.2f severity a night)",
             DEGRADING, (FIRST_NIGHT + timedelta(days=DEGRADE_FROM)).isoformat(), NOISE_STEP)
    code = run_trends(TrendsRequest(history=str(database), html=str(page), force=True), echo)
    for station, serial, *_ in SCANNERS:
        echo(f"{privacy.pseudonym('scanner', f'{station}|{serial}')} is {station}"
             + (" (the degrading one)" if station == DEGRADING else ""))
    echo(f"\nhistory: {database}\npage:    {page}\n`mediqa trends {database}` exits {code} "
         "(7 = a scanner x protocol in alert)")
    return EXIT_OK
