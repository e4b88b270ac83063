"""Where one `mediqa score` run spends its time: an in-process run (--workers 0) with clocks on
the pipeline's stages, printed as JSON. Run by `end_to_end.py` in a child process, so the
source tree under test (PYTHONPATH) and the start-up are the child's own.

Stages are exclusive (a stage's clock stops while a stage it calls runs): discover (walk and
headers), decode (Scan.read_slice), prepare (prepare_scan less the stages it calls: checks,
thumbnails, slice and patch selection, normalise, tokens), IQMs (compute_iqms), physics
(slice_physics), model (ModelScorer.score: packing, network, aggregation), write (rows,
journal, report), start-up (imports and load_scorer) and other (the rest of run_score).

Usage: python benchmarks/stages.py OUT.json REPORT.csv PATH...
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

STAGES = ("discover", "decode", "prepare", "IQMs", "physics", "model", "write", "start-up",
          "other")


class Clocks:
    """Exclusive per-stage time, CPU (this process, all threads) and wall: entering a stage
    pauses the one it was called from. CPU time is what survives a busy shared machine."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.wall: dict[str, float] = defaultdict(float)
        self._stack: list[str] = []
        self._since = (time.process_time(), time.perf_counter())

    def _switch(self, push: str | None) -> None:
        now = (time.process_time(), time.perf_counter())
        if self._stack:
            self.cpu[self._stack[-1]] += now[0] - self._since[0]
            self.wall[self._stack[-1]] += now[1] - self._since[1]
        if push is None:
            self._stack.pop()
        else:
            self._stack.append(push)
        self._since = now

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._switch(stage)
            try:
                return fn(*args, **kwargs)
            finally:
                self._switch(None)

        return timed


def instrument(clocks: Clocks, counts: dict[str, int]) -> None:
    """Put the clocks on the stages (module attributes, looked up at call time)."""
    from mediqa_cli import engine, physics, runner, scoring
    from mediqa_cli.io.scan import Scan

    walk = runner.discover

    def discover(*args: Any, **kwargs: Any) -> Iterator[Any]:
        items = walk(*args, **kwargs)
        step = clocks.wrap("discover", lambda: next(items, None))
        while (item := step()) is not None:
            if isinstance(item, Scan):
                item.read_slice = clocks.wrap("decode", item.read_slice)
            yield item

    score = scoring.ModelScorer.score

    def model(self: Any, batch: list[Any]) -> None:
        for prepared in batch:
            tokens = prepared.model_inputs[0]
            counts["slices"] += len(tokens)
            counts["tokens"] += sum(t.n_tokens for t in tokens)
        score(self, batch)

    runner.discover = discover
    engine.prepare_scan = clocks.wrap("prepare", engine.prepare_scan)
    engine.compute_iqms = clocks.wrap("IQMs", engine.compute_iqms)
    physics.slice_physics = clocks.wrap("physics", physics.slice_physics)
    scoring.ModelScorer.score = clocks.wrap("model", model)
    runner._Sink.take = clocks.wrap("write", runner._Sink.take)
    runner._Sink.finish = clocks.wrap("write", runner._Sink.finish)
    runner.write_report = clocks.wrap("write", runner.write_report)
    runner.load_scorer = clocks.wrap("start-up", runner.load_scorer)


def main() -> int:
    out, report, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
    logging.disable(logging.WARNING)
    clocks, counts = Clocks(), {"slices": 0, "tokens": 0}
    started = (time.process_time(), time.perf_counter())
    instrument(clocks, counts)  # imports the pipeline: start-up, like loading the weights
    clocks.cpu["start-up"] += time.process_time() - started[0]
    clocks.wall["start-up"] += time.perf_counter() - started[1]
    from mediqa_cli.runner import ScoreRequest, run_score

    clocks.wrap("other", lambda: run_score(ScoreRequest(paths=paths, out=report, workers=0,
                                                        quiet=True)))()
    result = {"cpu": round(time.process_time() - started[0], 3),
              "wall": round(time.perf_counter() - started[1], 3),
              "cpu_by_stage": {stage: round(clocks.cpu[stage], 3) for stage in STAGES},
              "wall_by_stage": {stage: round(clocks.wall[stage], 3) for stage in STAGES},
              **counts}
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
