"""Write a weights folder whose network is (1 - alpha) * A + alpha * B, tensor by tensor.

Why: the check behind "W" in benchmarks/RESULTS.md (v0.10.0): averaging a network with its own
continuation (WiSE-FT, Wortsman et al. 2022) did not keep the continuation's histology gain
without its losses elsewhere. Both folders must hold one network of one config; the output
keeps A's other files (reader, calibration, domain profile) and a card naming both parents.

    python benchmarks/interpolate_weights.py weights runs/H/weights 0.5 --out W50
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from mediqa_cli.model.weights import (
    CARD_FILE,
    CONFIG_FILE,
    WEIGHTS_FILE,
    load_weights,
    save_weights,
)


def interpolate(start: Path, end: Path, alpha: float, out: Path) -> Path:
    """The interpolated folder at `out` (replaced if present)."""
    first, card = load_weights(start)
    second, other = load_weights(end)
    if first.config != second.config or card.get("members", 1) != 1 or other.get("members", 1) != 1:
        raise ValueError("both folders must hold one network of one config")
    a, b = first.state_dict(), second.state_dict()
    first.load_state_dict({k: (1 - alpha) * a[k] + alpha * b[k] for k in a})
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(start, out, ignore=shutil.ignore_patterns(
        WEIGHTS_FILE, CONFIG_FILE, CARD_FILE, "__init__.py", "metrics", "specialists"))
    kept = {k: v for k, v in card.items()
            if k not in ("sha256", "parameters", "config", "weights_file", "name", "version")}
    kept["interpolation"] = {"alpha": alpha, "start": card["sha256"], "end": other["sha256"]}
    return save_weights(first, out, version=f"{card.get('version', '0')}-interp{alpha:g}",
                        card=kept)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("start", type=Path)
    ap.add_argument("end", type=Path)
    ap.add_argument("alpha", type=float)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    print(interpolate(args.start, args.end, args.alpha, args.out))


if __name__ == "__main__":
    main()
