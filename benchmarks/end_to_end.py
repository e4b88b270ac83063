"""End-to-end cost of `mediqa score` against the decode floor, measured side by side in one run.

Why: a nightly audit is judged by whether it finishes in its window, and the floor is reading
the files. One run prints, for the demo archive, a generated archive of many scans (DICOM series,
NIfTI and 2D, `archive.py`) and a 3D DICOM series, alone and as SERIES_COPIES copies:

1. the decode floor: every file decoded once by pydicom/nibabel/Pillow in a plain loop;
2. `mediqa score` as a user runs it (default workers, shipped weights): wall, CPU (all
   processes) and peak memory (MiB: the largest process's own peak, the group's summed RSS and
   PSS sampled every 0.2 s), as ratios to the floor;
3. where the time goes: an in-process run (--workers 0, one torch thread) with per-stage CPU
   clocks (`stages.py`: discover, decode, prepare, IQMs, physics, model, write, start-up);
4. cost against the number of files: slope of a least-squares line over the archive sizes.

A single series is mostly start-up (imports, weights): the run with SERIES_COPIES copies gives
the marginal cost of a series inside a run, (copies - one) over the same difference of the
floor, which is what a night of many series pays per series.

CPU time is reported beside wall because the machines are shared: a busy neighbour stretches
wall time, not CPU time. With --baseline SRC (a checkout of an older tree), every `mediqa score`
also runs from SRC, alternating, and the two reports are compared column by column.

Usage: python benchmarks/end_to_end.py [--scans 1000] [--sizes 250,500,1000] [--repeats 1]
       [--baseline SRC] [--models]
With --models, also the old model comparisons (ours vs the paper's ViT-B/8; backends).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from archive import PART_SCANS, build_archive, parts, source_volume  # noqa: E402
from compare_reports import differences, load  # noqa: E402

if TYPE_CHECKING:
    import torch

HERE = Path(__file__).resolve().parent
SERIES_COPIES = 8  # distinct series (own UIDs) of the 3D volume, for the marginal cost


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of fn over repeats (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def files_under(paths: Sequence[str]) -> list[str]:
    """Every file under the paths, sorted (hidden files skipped, as discovery does)."""
    found = []
    for root in paths:
        for folder, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found.extend(os.path.join(folder, n) for n in sorted(names) if not n.startswith("."))
    return found


def decode_floor(paths: Sequence[str]) -> dict[str, float]:
    """Decode every file once with pydicom/nibabel/Pillow in a plain loop: wall, CPU, voxels."""
    import warnings

    import nibabel as nib
    import pydicom
    from PIL import Image

    files = files_under(paths)
    cpu, wall, voxels = time.process_time(), time.perf_counter(), 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in files:
            low = path.lower()
            try:
                if low.endswith((".nii", ".nii.gz", ".mgz", ".mgh")):
                    data = np.asarray(nib.load(path).dataobj)
                elif low.endswith((".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")):
                    with Image.open(path) as image:
                        data = np.asarray(image)
                else:
                    data = pydicom.dcmread(path).pixel_array
            except Exception:  # noqa: BLE001 - the floor counts what decodes
                continue
            voxels += int(data.size)
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
            "files": len(files), "mvox": voxels / 1e6}


def _group_pids(group: int) -> list[int]:
    """The processes of a process group (the CLI and its decoding workers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group:
            pids.append(int(entry))
    return pids


def _kib(path: str, *keys: str) -> list[int]:
    """The `Key:  N kB` lines of one read of a /proc file, in `keys` order (0 for a key not
    there, or when the process has gone)."""
    found: dict[str, int] = {}
    try:
        with open(path, encoding="ascii") as handle:
            for line in handle:
                key = line.split(":", 1)[0] + ":"
                if key in keys:
                    found[key] = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return [found.get(key, 0) for key in keys]


def sample_group_memory(group: int, peaks: dict[int, int]) -> tuple[float, float]:
    """The group's summed resident and proportional memory now (MB), and each process's own
    high-water mark (`VmHWM`, kB) kept in `peaks`.

    Why not `ru_maxrss` of the child: Linux keeps a process's maximum RSS across fork and exec,
    so the CLI's figure was this benchmark's own size (985 MB on every tree). Why PSS beside
    RSS: the workers map the same torch libraries as the CLI, and summed RSS counts those
    shared pages once per process."""
    rss = pss = 0
    for pid in _group_pids(group):
        high_water, resident = _kib(f"/proc/{pid}/status", "VmHWM:", "VmRSS:")
        peaks[pid] = max(peaks.get(pid, 0), high_water)
        rss += resident
        pss += _kib(f"/proc/{pid}/smaps_rollup", "Pss:")[0]
    return rss / 1024, pss / 1024


# `python -m` puts the working directory first on sys.path, ahead of PYTHONPATH: run from the
# repository root, a --baseline child would import this tree's mediqa_cli, not the baseline's.
_CHILD_CWD = tempfile.gettempdir()


def _env(source: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if source:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (source, env.get("PYTHONPATH"))))
    return env


def score_cli(paths: Sequence[str], out: Path, source: str | None = None) -> dict[str, float]:
    """`mediqa score` in a child process, default options: wall, CPU of it and its workers,
    peak memory (the largest process's own peak, and the group's summed RSS and PSS sampled
    every 0.2 s), exit code."""
    command = [sys.executable, "-m", "mediqa_cli", "score", *paths, "--out", str(out), "--quiet"]
    started = time.perf_counter()
    child = subprocess.Popen(command, env=_env(source), cwd=_CHILD_CWD, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peaks: dict[int, int] = {}
    group_peak = [0.0, 0.0]
    done = threading.Event()

    def sample() -> None:
        while True:  # once at the start, then every 0.2 s: the group sums are lower bounds
            rss, pss = sample_group_memory(child.pid, peaks)
            group_peak[:] = [max(group_peak[0], rss), max(group_peak[1], pss)]
            if done.wait(0.2):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    child.returncode = os.waitstatus_to_exitcode(status)
    stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
    if child.returncode not in (0, 1, 4):
        raise SystemExit(f"mediqa score failed ({child.returncode}): {stderr[-2000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "rss_max_mb": max(peaks.values(), default=0) / 1024,
            "rss_group_mb": group_peak[0], "pss_group_mb": group_peak[1],
            "code": child.returncode}


def stage_split(paths: Sequence[str], out: Path, source: str | None = None) -> dict:
    """`stages.py` in a child process (one torch thread, so CPU time is not spin-waiting)."""
    env = _env(source)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    result = out.with_suffix(".json")
    subprocess.run([sys.executable, str(HERE / "stages.py"), str(result), str(out), *paths],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads(result.read_text(encoding="utf-8"))


def startup(work: Path, source: str | None = None) -> dict[str, float]:
    """`mediqa score` of an empty folder (imports, weights, no scans) and `mediqa --help`."""
    empty = work / "empty"
    empty.mkdir(exist_ok=True)
    run = score_cli([str(empty)], work / "empty.csv", source)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mediqa_cli", "--help"], env=_env(source),
                   cwd=_CHILD_CWD, stdout=subprocess.DEVNULL, check=True)
    return {"score_empty_wall": run["wall"], "score_empty_cpu": run["cpu"],
            "help_wall": time.perf_counter() - started}


def write_series(target: Path, side: int | None = None, announce: bool = True) -> Path:
    """A 3D DICOM series (one file per slice) of the MNI template (or EPI), optionally
    resampled to side x side to mimic a 512-matrix CT/MR series."""
    import torch

    from mediqa_cli.demo import write_dicom_series

    stack, name = source_volume()
    if side is not None:
        resized = torch.nn.functional.interpolate(
            torch.from_numpy(np.ascontiguousarray(stack))[:, None], size=(side, side),
            mode="bilinear", align_corners=False)
        stack = resized[:, 0].numpy()
    write_dicom_series((stack * 4000).astype(np.int16), target, modality="MR",
                       pixel_spacing=(1.0, 1.0), slice_spacing=1.0, body_part="HEAD", seed=0)
    if announce:
        print(f"3D series {target.name}: {name}, {stack.shape[0]} slices of "
              f"{stack.shape[1]}x{stack.shape[2]}")
    return target


def slope(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares (slope, intercept, r^2) of ys on xs."""
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if len(x) < 2:
        return float("nan"), float("nan"), float("nan")
    b, a = np.polyfit(x, y, 1)
    fit = a + b * x
    total = float(np.sum((y - y.mean()) ** 2))
    return float(b), float(a), 1.0 - float(np.sum((y - fit) ** 2)) / total if total else 1.0


def compare(name: str, before: Path, after: Path) -> str:
    """One line: are the two reports equal column by column (timings excluded)?"""
    counts, _ = differences(load(str(before)), load(str(after)))
    if not counts:
        return f"{name}: reports identical (timings excluded)"
    return f"{name}: reports DIFFER in " + ", ".join(f"{c} ({n} rows)" for c, n in counts.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=1000,
                        help=f"scans in the generated archive (a multiple of {PART_SCANS})")
    parser.add_argument("--sizes", default="250,500,1000",
                        help="archive sizes (scans) for the cost-vs-files slope")
    parser.add_argument("--repeats", type=int, default=1, help="runs per measurement (median)")
    parser.add_argument("--baseline", help="source tree of an older mediqa to run beside")
    parser.add_argument("--models", action="store_true",
                        help="also the model-design and backend comparisons")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    sizes = sorted({min(int(v), args.scans) for v in args.sizes.split(",")} | {args.scans})
    work = Path(tempfile.mkdtemp(prefix="mediqa-bench-"))
    # Absolute: the children run from _CHILD_CWD, where a relative path would name nothing
    # and the "before" runs would silently import this tree.
    baseline = str(Path(args.baseline).resolve()) if args.baseline else None
    if baseline and not (Path(baseline) / "mediqa_cli" / "__init__.py").is_file():
        raise SystemExit(f"--baseline {baseline}: no mediqa_cli there (the editable install "
                         "would then run this tree as 'before')")
    sources = {"after": None, **({"before": baseline} if baseline else {})}
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; work dir {work}")

    from mediqa_cli.demo import build_demo_tree
    from mediqa_cli.model.weights import find_installed_weights

    weights = find_installed_weights()
    if weights is None:
        raise SystemExit("no weights installed: the benchmark measures the shipped model")
    print(f"weights {weights}")
    build_demo_tree(work / "demo")
    started = time.perf_counter()
    counts = build_archive(work / "archive", args.scans)
    print(f"archive: {args.scans} scans ({counts['dicom_series']} DICOM series, "
          f"{counts['nifti']} NIfTI, {counts['2d']} 2D; {counts['files']} files), written in "
          f"{time.perf_counter() - started:.0f} s")
    series = write_series(work / "series")
    series512 = write_series(work / "series512", side=512)
    for k in range(SERIES_COPIES):  # random UIDs: each copy is a series of its own
        write_series(work / "series_copies" / f"s{k}", announce=False)

    trees: dict[str, list[str]] = {"demo": [str(work / "demo")]}
    trees.update({f"archive {n}": parts(work / "archive", n) for n in sizes})
    trees.update({"3D 197x233": [str(series)], "3D 512x512": [str(series512)],
                  f"3D x{SERIES_COPIES}": [str(work / "series_copies")]})

    print("\n== start-up ==")
    for label, source in sources.items():
        s0 = startup(work, source)
        print(f"{label}: mediqa --help {s0['help_wall']:.2f} s wall; score of an empty folder "
              f"(imports + weights) {s0['score_empty_wall']:.2f} s wall, "
              f"{s0['score_empty_cpu']:.2f} s CPU")

    print("\n== 1-2. decode floor vs `mediqa score` (default workers) ==")
    header = (f"{'tree':<13} {'files':>6} {'Mvox':>6} {'floor s':>8} {'floor cpu':>9} "
              f"{'run':<6} {'wall s':>7} {'cpu s':>7} {'wall/floor':>10} {'cpu/floor':>9} "
              f"{'peak MiB':>8} {'group RSS':>9} {'group PSS':>9}")
    print(header)
    walls: dict[str, dict[str, list[tuple[int, float, float]]]] = {}
    floors: dict[str, tuple[float, float]] = {}
    for name, paths in trees.items():
        floor = [decode_floor(paths) for _ in range(args.repeats)]
        f_wall = statistics.median(f["wall"] for f in floor)
        f_cpu = statistics.median(f["cpu"] for f in floor)
        floors[name] = (f_wall, f_cpu)
        runs: dict[str, list[dict[str, float]]] = {label: [] for label in sources}
        for repeat in range(args.repeats):
            for label, source in sources.items():
                out = work / f"{name.replace(' ', '_')}_{label}_{repeat}.csv"
                runs[label].append(score_cli(paths, out, source))
        for label, results in runs.items():
            wall = statistics.median(r["wall"] for r in results)
            cpu = statistics.median(r["cpu"] for r in results)
            rss = max(r["rss_max_mb"] for r in results)
            group = max(r["rss_group_mb"] for r in results)
            group_pss = max(r["pss_group_mb"] for r in results)
            walls.setdefault(label, {}).setdefault(name, []).append(
                (floor[0]["files"], wall, cpu))
            print(f"{name:<13} {floor[0]['files']:>6} {floor[0]['mvox']:>6.1f} {f_wall:>8.2f} "
                  f"{f_cpu:>9.2f} {label:<6} {wall:>7.2f} {cpu:>7.2f} {wall / f_wall:>10.1f} "
                  f"{cpu / f_cpu:>9.1f} {rss:>8.0f} {group:>9.0f} {group_pss:>9.0f}")
        if args.baseline:
            tag = name.replace(" ", "_")
            print("   " + compare(name, work / f"{tag}_before_0.csv",
                                  work / f"{tag}_after_0.csv"))

    many, one = f"3D x{SERIES_COPIES}", "3D 197x233"
    floor_wall = floors[many][0] - floors[one][0]
    floor_cpu = floors[many][1] - floors[one][1]
    for label, by_tree in walls.items():
        _, wall_many, cpu_many = by_tree[many][0]
        _, wall_one, cpu_one = by_tree[one][0]
        print(f"3D series inside a run ({label}, {SERIES_COPIES} copies minus one): "
              f"{(wall_many - wall_one) / (SERIES_COPIES - 1):.2f} s wall a series, "
              f"wall/floor {(wall_many - wall_one) / floor_wall:.1f}, "
              f"cpu/floor {(cpu_many - cpu_one) / floor_cpu:.1f}")

    print("\n== 3. where the time goes (--workers 0, one torch thread; CPU s by stage) ==")
    split_trees = {"demo": trees["demo"], f"archive {sizes[0]}": trees[f"archive {sizes[0]}"],
                   "3D 197x233": trees["3D 197x233"]}
    splits: dict[tuple[str, str], dict] = {}
    for name, paths in split_trees.items():
        for label, source in sources.items():
            splits[(name, label)] = stage_split(paths, work / f"split_{len(splits)}.csv", source)
    columns = list(splits)
    print(f"{'stage':<10} " + " ".join(f"{n[:12] + ' ' + l:>19}" for n, l in columns))
    from stages import STAGES

    for stage in (*STAGES, "cpu", "wall"):
        values = [splits[c]["cpu_by_stage"][stage] if stage in STAGES else splits[c][stage]
                  for c in columns]
        print(f"{stage:<10} " + " ".join(f"{v:>19.2f}" for v in values))
    for c in columns:
        split = splits[c]
        per_slice = split["cpu_by_stage"]["model"] / max(split["slices"], 1)
        print(f"{c[0]} {c[1]}: model {split['slices']} slices, {split['tokens']} tokens, "
              f"{per_slice * 1000:.0f} ms CPU a slice")

    print("\n== 4. cost vs number of files (archive sizes; seconds per 1,000 files) ==")
    for label, by_tree in walls.items():
        points = [by_tree[f"archive {n}"][0] for n in sizes]
        files = [p[0] for p in points]
        for metric, index in (("wall", 1), ("cpu", 2)):
            b, a, r2 = slope(files, [p[index] for p in points])
            print(f"{label} {metric}: {b * 1000:.1f} s per 1,000 files + {a:.1f} s "
                  f"(r^2 {r2:.3f}, sizes {files})")
    if args.models:
        model_sections()


def paper_vit_b8() -> torch.nn.Module:
    """ViT-B/8 as in MANIQA's backbone: 224/8 = 784 tokens + CLS, width 768, 12 layers/heads."""
    import torch

    class ViT(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Conv2d(3, 768, kernel_size=8, stride=8)
            self.cls = torch.nn.Parameter(torch.zeros(1, 1, 768))
            self.pos = torch.nn.Parameter(torch.zeros(1, 785, 768))
            layer = torch.nn.TransformerEncoderLayer(768, 12, 3072, batch_first=True,
                                                     norm_first=True, activation="gelu")
            self.blocks = torch.nn.TransformerEncoder(layer, 12, enable_nested_tensor=False)
            self.head = torch.nn.Linear(768, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            tokens = self.embed(x).flatten(2).transpose(1, 2)
            tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], 1) + self.pos
            return self.head(self.blocks(tokens)[:, 0])

    return ViT().eval()


def transformer_flops(tokens: int, width: int, depth: int, mlp: float) -> float:
    """Forward FLOPs of a pre-norm encoder (2 x multiply-adds): projections, attention, MLP."""
    per_layer = 2 * tokens * (4 * width * width + 2 * mlp * width * width) + 4 * tokens**2 * width
    return depth * per_layer


def model_sections() -> None:
    """The model-design and backend comparisons (--models): ours vs the paper's ViT-B/8, and
    eager vs torch.compile vs TorchScript vs torch.export."""
    import torch

    from mediqa_cli.model.config import ModelConfig
    from mediqa_cli.model.network import MedIQANet

    repeats = 3
    print("\n== 5. our model vs the paper's ViT-B/8 design (per volume) ==")
    from mediqa_cli.model.packing import example_batch

    config = ModelConfig()
    ours = MedIQANet(config).eval()
    vit = paper_vit_b8()
    slices_ours, tokens = 8, 256
    batch = example_batch(config, [tokens] * slices_ours)
    images = torch.rand(7, 3, 224, 224)
    with torch.inference_mode():
        t_ours = timed(lambda: ours(*batch.args()), repeats)
        t_vit = timed(lambda: vit(images), repeats)
    seq = tokens + config.n_queries
    f_ours = transformer_flops(seq, config.width, config.depth, config.mlp_ratio)
    f_vit = transformer_flops(785, 768, 12, 4.0)
    print(f"ours: {slices_ours} salient slices x {tokens} tokens, {t_ours:.3f} s/volume, "
          f"{f_ours / 1e9:.2f} GFLOP/slice")
    print(f"paper (ViT-B/8 @224, 7 slices): {t_vit:.3f} s/volume, {f_vit / 1e9:.1f} GFLOP/slice")
    print(f"time ratio paper/ours: {t_vit / t_ours:.1f}x; FLOP ratio per slice: "
          f"{f_vit / f_ours:.1f}x")

    print("\n== 6. backends on one packed batch (8 slices x 256 tokens) ==")
    from mediqa_cli.model.export import export_model, script_model

    runners: dict[str, Callable[[], object]] = {"eager": lambda: ours(*batch.args())}
    scripted = script_model(ours)
    runners["torchscript"] = lambda: scripted(*batch.args())
    compiled = torch.compile(ours, dynamic=True)
    runners["compile"] = lambda: compiled(*batch.args())
    program = export_model(ours, tokens).module()
    runners["export"] = lambda: program(*batch.args())
    with torch.inference_mode():
        times = {name: timed(fn, repeats + 2) for name, fn in runners.items()}
    for name, value in times.items():
        print(f"{name:<12} {value * 1000:8.1f} ms   eager/this = {times['eager'] / value:.2f}x")


if __name__ == "__main__":
    main()
