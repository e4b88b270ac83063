"""The learned scorer behind the report's `score`, `phys_*`, `grade` and prompt columns.

Split in two on purpose: `SlicePreparer` is small and picklable and runs in the decoding workers
(normalise, patchify, patch saliency), while `ModelScorer` holds the network in the main process
and scores many scans' slices per packed batch. Without installed weights there is no scorer:
the CLI says so and the score stays empty; it never scores with random weights.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mediqa_cli.calibration import Calibration
from mediqa_cli.domain import DomainCheck
from mediqa_cli.io.scan import Scan
from mediqa_cli.model.config import ModelConfig
from mediqa_cli.model.packing import PackedBatch, SliceOutput, pack, plan_batches, unpack
from mediqa_cli.model.prompts import PromptRequest, request_for_scan, resolve_prompt
from mediqa_cli.physics_head import PhysicsHead
from mediqa_cli.preprocess import SliceTokens, preprocess_slice
from mediqa_cli.saliency import SliceSelection, select_patches
from mediqa_cli.taxonomy import GRADES, grade_for  # noqa: F401 - re-exported
from mediqa_cli.views import average_views, flip_views

log = logging.getLogger("mediqa")

BACKENDS = ("eager", "compile", "torchscript", "export")



@dataclass(frozen=True)
class SlicePreparer:
    """Worker-side half: raw selected slices -> patch tokens (picklable, no weights).

    The preprocessing settings (patch grid cap, patches kept, whether whole-slice physics is
    measured) come from the weights' config, so training (`mediqa_train.batches.tokens_for`)
    and `mediqa score` tokenise a slice by this one method.
    """

    config: ModelConfig
    views: int = 1  # mirror views per slice, averaged by the scorer (mediqa_cli.views)

    def slice_tokens(
        self,
        images: list[np.ndarray],
        modality: str | None,
        spacing: tuple[float, float],
        value_range: tuple[float, float] | None,
        seeds: list[int],
    ) -> list[SliceTokens]:
        """Raw slices (reader layout) -> normalised, patchified, measured, selected tokens."""
        cfg = self.config
        tokens = [preprocess_slice(image, modality, spacing, cfg.max_patches, value_range,
                                   physics=cfg.physics_tokens) for image in images]
        keep = select_patches(tokens, keep=cfg.keep_patches,
                              background_fraction=cfg.background_fraction, seeds=seeds)
        return [t.take(k.indices) for t, k in zip(tokens, keep)]

    def prepare(
        self, scan: Scan, slices: dict[int, np.ndarray], selection: SliceSelection
    ) -> tuple[list[SliceTokens], PromptRequest]:
        """Tokens of each selected slice, `views` consecutive sets per slice."""
        indices = [int(i) for i in selection.indices]
        spacing = (scan.spacing[1], scan.spacing[2])
        images, seeds = [], []
        for i in indices:
            for view in flip_views(slices[i], self.views):
                images.append(view)
                seeds.append(i)
        tokens = self.slice_tokens(images, scan.modality, spacing, selection.value_range, seeds)
        return tokens, request_for_scan(scan, self.config)


@dataclass
class ModelScorer:
    """Main-process half: packed batches through the network, per-scan aggregation."""

    model: Any  # MedIQANet, ScriptModule or exported program module
    config: ModelConfig
    version: str
    preparer: SlicePreparer
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    max_tokens: int = 4096
    fixed_max_seqlen: int | None = None  # an exported program needs its traced bound
    domain: DomainCheck | None = None  # out-of-domain references saved with the weights
    calibration: Calibration | None = None  # the calibrated scale saved with the weights
    physics_head: PhysicsHead | None = None  # the token reader beside the network, if any
    precision: str = "fp32"  # the CPU arithmetic of the network (mediqa_cli.model.precision)
    specialists: dict[str, Any] = field(default_factory=dict)  # modality -> its own network

    def score(self, batch: list[Any]) -> None:
        """Fill each PreparedScan's result with score, grade, physical estimates, prompts, worst
        slice, and its share of the model time (by token count) as `score_seconds`."""
        started = time.perf_counter()
        flat: list[tuple[int, SliceTokens, PromptRequest]] = []
        for scan_index, prepared in enumerate(batch):
            tokens, request = prepared.model_inputs
            flat.extend((scan_index, t, request) for t in tokens)
        named = self._named_routes(flat)
        taken = {i for indices in named.values() for i in indices}
        main = [i for i in range(len(flat)) if i not in taken]
        outputs: list[SliceOutput] = [None] * len(flat)  # type: ignore[list-item] - all filled
        for i, out in zip(main, self._run(self.model, [flat[i][1:] for i in main])):
            outputs[i] = out
        for modality, indices in named.items():  # the specialist alone, its context head too
            for i, out in zip(indices, self._run(self.specialists[modality],
                                                 [flat[i][1:] for i in indices])):
                outputs[i] = out
        for modality, indices in self._routes(batch, flat, outputs, main).items():
            tuned = self._run(self.specialists[modality], [flat[i][1:] for i in indices])
            for i, out in zip(indices, tuned):  # the main network's context guess stays
                outputs[i] = replace(outputs[i], severities=out.severities, quality=out.quality)
        per_scan: dict[int, list[SliceOutput]] = {}
        for (scan_index, _, _), out in zip(flat, outputs):
            per_scan.setdefault(scan_index, []).append(out)
        tokens_per_scan = [0] * len(batch)
        for (scan_index, slice_tokens, _) in flat:
            tokens_per_scan[scan_index] += slice_tokens.n_tokens
        for scan_index, prepared in enumerate(batch):
            _, request = prepared.model_inputs
            slices = average_views(per_scan.get(scan_index, []), self.preparer.views)
            self._aggregate(prepared, slices, request)
            self._check_domain(prepared)
        elapsed = time.perf_counter() - started
        total = max(1, sum(tokens_per_scan))
        for scan_index, prepared in enumerate(batch):
            prepared.result.score_seconds = round(elapsed * tokens_per_scan[scan_index] / total, 4)

    def _run(self, model: Any, items: list[tuple[SliceTokens, PromptRequest]]
             ) -> list[SliceOutput]:
        """One network over these slices, in packed batches of at most max_tokens."""
        outputs: list[SliceOutput] = []
        counts = [t.n_tokens for t, _ in items]
        for group in plan_batches(counts, self.max_tokens, self.config):
            packed = pack([items[i][0] for i in group], [items[i][1] for i in group], self.config,
                          max_seqlen=self.fixed_max_seqlen)
            outputs.extend(self._forward(model, packed))
        return outputs

    def _named_routes(self, flat: list[tuple[int, SliceTokens, PromptRequest]]
                      ) -> dict[str, list[int]]:
        """{modality: indices into flat} of the slices whose request already names a modality
        with a specialist (metadata, file name or override): the specialist scores them alone,
        so they cost one forward pass."""
        routes: dict[str, list[int]] = {}
        for i, (_, _, request) in enumerate(flat):
            if request.modality_id < self.config.unknown_modality:
                name = self.config.modalities[request.modality_id]
                if name in self.specialists:
                    routes.setdefault(name, []).append(i)
        return routes

    def _routes(self, batch: list[Any], flat: list[tuple[int, SliceTokens, PromptRequest]],
                outputs: list[SliceOutput], scored: list[int]) -> dict[str, list[int]]:
        """{modality: indices into flat} of the slices the main network scored (`scored`) that
        a specialist scores instead: every slice of a scan whose prompt, once the main network
        has guessed what nothing named, is a modality with a specialist."""
        if not self.specialists:
            return {}
        by_scan: dict[int, list[int]] = {}
        for i in scored:
            by_scan.setdefault(flat[i][0], []).append(i)
        routes: dict[str, list[int]] = {}
        for scan_index, indices in by_scan.items():
            _, request = batch[scan_index].model_inputs
            prompt = resolve_prompt(
                request,
                np.mean([outputs[i].modality_logits for i in indices], axis=0),
                np.mean([outputs[i].anatomy_logits for i in indices], axis=0),
                self.config,
            )
            if prompt.modality in self.specialists:
                routes.setdefault(prompt.modality, []).extend(indices)
        return routes

    def _forward(self, model: Any, packed: PackedBatch) -> list[SliceOutput]:
        args = packed.to(self.device).args()
        with torch.inference_mode():
            if self.device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    return unpack(model(*args))
            return unpack(model(*args))

    def _aggregate(self, prepared: Any, outputs: list[SliceOutput], request: PromptRequest) -> None:
        result = prepared.result
        if not outputs:
            result.fail("model produced no output for this scan")
            return
        weights = np.asarray(prepared.slice_weights, dtype=np.float64)
        if weights.shape[0] != len(outputs) or not np.isfinite(weights).all() or weights.sum() <= 0:
            weights = np.ones(len(outputs))
        weights = weights / weights.sum()
        prompt = resolve_prompt(
            request,
            np.mean([o.modality_logits for o in outputs], axis=0),
            np.mean([o.anatomy_logits for o in outputs], axis=0),
            self.config,
        )
        quality = np.asarray([o.quality for o in outputs], dtype=np.float64)
        if self.physics_head is not None:  # the first (unflipped) view's measures per slice
            tokens = prepared.model_inputs[0][::self.preparer.views]
            quality = self.physics_head.apply(quality, [t.physics for t in tokens],
                                              prompt.modality)
        if self.calibration is not None:
            quality = self.calibration.apply(quality, prompt.modality)
        severities = np.stack([o.severities for o in outputs]).astype(np.float64)
        score = float(np.dot(weights, quality))
        worst = int(np.argmin(quality))
        result.score, result.exact_score = round(score, 2), score
        result.grade = grade_for(score)
        mean_sev = weights @ severities
        result.physical = {family: round(float(value), 4)
                           for family, value in zip(self.config.families, mean_sev)}
        result.worst_slice = int(prepared.slice_indices[worst])
        result.worst_slice_score = round(float(quality[worst]), 2)
        result.modality, result.modality_source = prompt.modality, prompt.modality_source
        result.anatomy, result.anatomy_source = prompt.anatomy, prompt.anatomy_source
        if prompt.disagrees:
            result.add_note(f"context head disagrees with metadata: looks like "
                            f"{prompt.predicted_modality}/{prompt.predicted_anatomy}")
        result.model_version = self.version
        detail = result.detail
        detail["slice_quality"] = [round(float(q), 3) for q in quality]
        detail["slice_severities"] = severities.round(4).tolist()


    def _check_domain(self, prepared: Any) -> None:
        """The distance of a scan's slice physics to the training corpus (mediqa_cli.domain) in
        `domain_distance`; beyond the threshold, and with no modality from metadata, file name
        or override, modality OTHER and a note.

        Why only then: metadata that names a supported modality is stronger evidence than the
        distance, which also exceeds the threshold on real scans of sources unlike the corpus
        (benchmarks/RESULTS.md, "Out-of-domain inputs"); an image nothing names is where a
        photo or a screenshot gets scored as fundus.
        """
        result = prepared.result
        measures = [t.physics for t in prepared.model_inputs[0] if t.physics is not None]
        if self.domain is None or not measures or result.status == "error":
            return
        verdict = self.domain.check(measures)
        result.domain_distance = round(verdict.distance, 3)
        if not verdict.in_domain and result.modality_source == "predicted":
            result.modality = "OTHER"
            result.add_note(verdict.note or "")


def load_scorer(weights_dir: Path, device: str = "auto", backend: str = "eager",
                views: int = 1, calibrated: bool = True, precision: str = "auto",
                physics_head: bool = True) -> ModelScorer:
    """Load verified weights and wrap the network in the requested backend; `views` mirror
    views per slice are averaged (the version says so, so --resume never mixes the two).
    `calibrated` False reports the network's raw score, which the calibration is fitted on; a
    calibrated score's version names the calibration file's digest. `precision` is the CPU
    arithmetic (mediqa_cli.model.precision): `auto` runs the transformer blocks in bf16 on a
    CPU with native bf16 and the eager backend; a bf16 scorer's version says `+bf16`.
    `physics_head` False scores with the network alone, which the token reader is fitted beside
    (`mediqa_cli.physics_head`); a reader's digest is part of the version. A folder's
    per-modality specialists (`mediqa_cli.model.weights.load_specialists`) run in the same
    backend and arithmetic, and each one's checksum is part of the version."""
    from mediqa_cli.model.precision import resolve_precision
    from mediqa_cli.model.weights import load_specialists, load_weights

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    target = _pick_device(device)
    used_precision = resolve_precision(precision, target, backend)
    model, card = load_weights(weights_dir, target)
    config: ModelConfig = model.config
    version = str(card.get("version") or card.get("name") or "unknown")
    preparer = SlicePreparer(config, views=views)
    fixed = min(config.max_patches, config.keep_patches) if backend == "export" else None
    runnable = _runnable(model, backend, used_precision, fixed)
    specialists: dict[str, Any] = {}
    by_digest: dict[str, Any] = {}  # one network serving several modalities is wrapped once
    for modality, (network, network_card) in load_specialists(weights_dir, config, target).items():
        digest = str(network_card["sha256"])
        if digest not in by_digest:
            by_digest[digest] = _runnable(network, backend, used_precision, fixed)
        specialists[modality] = by_digest[digest]
        version = f"{version}+{modality}-{digest[:8]}"
    if backend != "eager":
        version = f"{version}+{backend}"
    if views > 1:
        version = f"{version}+views{views}"
    if used_precision != "fp32":  # --resume and the history never mix bf16 and fp32 rows
        version = f"{version}+{used_precision}"
    head = PhysicsHead.load(weights_dir) if physics_head else None
    if head is not None:  # the raw score is the network's plus the reader's term
        version = f"{version}+ph-{head.digest}"
    calibration = Calibration.load(weights_dir) if calibrated else None
    if calibration is not None:  # --resume and the history never mix two scales
        version = f"{version}+cal-{calibration.digest}"
    return ModelScorer(runnable, config, version, preparer, target, fixed_max_seqlen=fixed,
                       domain=DomainCheck.load(weights_dir), calibration=calibration,
                       physics_head=head, precision=used_precision, specialists=specialists)


def _runnable(model: Any, backend: str, precision: str, fixed: int | None) -> Any:
    """The network wrapped in the requested backend, or in bf16 blocks for eager bf16."""
    from mediqa_cli.model.precision import with_bf16_blocks

    if backend == "compile":
        return torch.compile(model, dynamic=True)
    if backend == "torchscript":
        from mediqa_cli.model.export import script_model

        return script_model(model)
    if backend == "export":
        from mediqa_cli.model.export import export_model

        return export_model(model, fixed).module()
    # In place: load_scorer does not use the fp32 network again.
    return with_bf16_blocks(model, in_place=True) if precision == "bf16" else model


def _pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(device)


def load_default_scorer(device: str = "auto", backend: str = "eager", views: int = 1,
                        precision: str = "auto") -> ModelScorer | None:
    """The installed weights' scorer, or None (with a clear log line) when none are installed."""
    from mediqa_cli.model.weights import find_installed_weights

    found = find_installed_weights()
    if found is None:
        log.warning("no weights installed: the score column stays empty (classical IQMs only)")
        return None
    scorer = load_scorer(found, device, backend, views, precision=precision)
    log.info("model %s from %s on %s (%s, %s)", scorer.version, found, scorer.device, backend,
             _arithmetic(scorer))
    return scorer


def _arithmetic(scorer: ModelScorer) -> str:
    """The network's arithmetic, as the start-up log line says it."""
    if scorer.device.type == "cuda":
        return "bf16 autocast on the GPU"
    if scorer.precision == "bf16":
        return "bf16 transformer blocks"
    return "fp32"


def describe_installed_weights() -> list[tuple[str, str]]:
    """Lines for `mediqa info`: where the weights are, their version and verified checksum."""
    from mediqa_cli.model.weights import (
        WeightsError,
        find_installed_weights,
        read_card,
        sha256_file,
        specialist_folders,
    )

    try:
        found = find_installed_weights()
    except WeightsError as exc:
        return [("weights", f"error: {exc}")]
    if found is None:
        return [("weights", "none installed: scores stay empty, classical IQMs only")]
    card = read_card(found)
    files = sorted(p.name for p in Path(found).glob("*.safetensors"))
    digest = sha256_file(Path(found) / files[0]) if files else "missing"
    expected = str(card.get("sha256", ""))
    state = "verified" if digest == expected else f"MISMATCH (card says {expected[:12]}...)"
    lines = [
        ("weights", str(found)),
        ("weights version", str(card.get("version", "unknown"))),
        ("weights sha256", f"{digest} ({state})"),
    ]
    if int(card.get("members", 1)) > 1:
        lines.append(("weights members", f"{card['members']} networks, outputs averaged"))
    for folder in specialist_folders(found):
        try:
            special = read_card(folder)
        except WeightsError as exc:
            lines.append((f"specialist {folder.name}", f"error: {exc}"))
        else:
            lines.append((f"specialist {folder.name}",
                          f"{special.get('version', 'unknown')}, sha256 "
                          f"{str(special.get('sha256', ''))[:12]}... (scores {folder.name} scans)"))
    try:
        head = PhysicsHead.load(found)
    except ValueError as exc:
        lines.append(("physics reader", f"error: {exc}"))
    else:
        if head is not None:
            lines.append(("physics reader", f"{', '.join(sorted(head.readers))} "
                                            f"(physics_head.json, digest {head.digest})"))
            if head.floors:
                lines.append(("exposure floor", ", ".join(
                    f"{m} below display mean {f.bound:.3f}, {f.per_stop:.2f} logits a stop"
                    for m, f in sorted(head.floors.items()))))
    return lines
