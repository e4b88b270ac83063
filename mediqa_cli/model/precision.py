"""The network's arithmetic on the CPU: fp32, or bf16 in the transformer blocks.

Why: on a CPU with native bf16 matmuls (AVX512-BF16 or AMX through oneDNN) bf16 transformer
blocks cut the network's CPU time by 30% and leave the accuracy benchmark where it was
(benchmarks/RESULTS.md, "Speed: the model's arithmetic on the CPU"). Elsewhere torch emulates
bf16 and it is slower than fp32, so `auto` picks bf16 only where the CPU says it has it.

Only the eager backend gets it: TorchScript, torch.export and torch.compile run the network as
traced in fp32. On CUDA the scorer has its own autocast (`ModelScorer._forward`); this module
is about the CPU. A scorer in bf16 names it in its version (`+bf16`), so `--resume` and the
history never mix its rows with fp32 rows.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from mediqa_cli.model.ensemble import members_of
from mediqa_cli.options import PRECISIONS

log = logging.getLogger("mediqa")

# /proc/cpuinfo flags of the CPUs whose bf16 matmuls are native (oneDNN uses them).
NATIVE_BF16_FLAGS: frozenset[str] = frozenset({"avx512_bf16", "amx_bf16"})
_CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags of the first processor in a Linux /proc/cpuinfo text (x86 `flags`)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


@functools.cache
def native_bf16() -> bool:
    """True only when this CPU multiplies bf16 natively (Linux /proc/cpuinfo names
    `avx512_bf16` or `amx_bf16`); anything else, or no readable /proc/cpuinfo, is False."""
    try:
        text = _CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return bool(cpu_flags(text) & NATIVE_BF16_FLAGS)


def resolve_precision(requested: str, device: torch.device, backend: str) -> str:
    """The arithmetic a scorer runs in: `fp32` or `bf16`.

    `auto` is bf16 on a CPU device with the eager backend and native bf16, else fp32. An
    explicit `bf16` elsewhere than the eager backend on the CPU is a ValueError (the other
    backends and CUDA keep their own arithmetic); on a CPU without native bf16 it runs,
    emulated and slower, with a warning.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; choose one of "
                         f"{', '.join(PRECISIONS)}")
    eligible = device.type == "cpu" and backend == "eager"
    if requested == "auto":
        return "bf16" if eligible and native_bf16() else "fp32"
    if requested == "fp32":
        return "fp32"
    if device.type != "cpu":
        raise ValueError(f"--precision bf16 is the CPU's arithmetic; the model runs on "
                         f"{device.type} here (use --device cpu, or --precision auto/fp32)")
    if backend != "eager":
        raise ValueError(f"--precision bf16 needs the eager backend; {backend} keeps fp32 "
                         "(use --backend eager, or --precision auto/fp32)")
    if not native_bf16():
        log.warning("--precision bf16 on a CPU without native bf16 matmuls (no %s in "
                    "/proc/cpuinfo): emulated, slower than fp32",
                    " or ".join(sorted(NATIVE_BF16_FLAGS)))
    return "bf16"


def auto_precision_note() -> str:
    """What `auto` picks on this machine's CPU, for `mediqa info`."""
    if native_bf16():
        return "auto = bf16 transformer blocks on the CPU (native bf16 matmuls)"
    return "auto = fp32 (this CPU has no native bf16 matmuls; bf16 would be emulated)"


class Bf16Block(nn.Module):
    """A transformer block run under CPU bf16 autocast; returns fp32 (x + bf16 updates), so
    the residual stream between blocks stays fp32."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: Tensor, cu_seqlens: Tensor, max_seqlen: int) -> Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.block(x, cu_seqlens, max_seqlen).float()


def map_blocks(model: nn.Module, wrap: Callable[[nn.Module], nn.Module],
               in_place: bool = False) -> nn.Module:
    """A copy of the model (a MedIQANet or an ensemble) with every transformer block of every
    member, context blocks included, replaced by `wrap(block)`; `in_place` wraps the model's
    own blocks instead (for a caller that does not use the unwrapped model again: the copy
    costs 40 ms of every run's start-up per network)."""
    if not in_place:
        model = copy.deepcopy(model)
    for network in members_of(model):
        for blocks in (network.context_blocks, network.blocks):
            for i, block in enumerate(blocks):
                blocks[i] = wrap(block)
    return model


def with_bf16_blocks(model: nn.Module, in_place: bool = False) -> nn.Module:
    """A copy of the model (a MedIQANet or an ensemble) whose transformer blocks run in bf16.

    Why only the blocks: their linear layers carry ~85% of the multiply-adds. Embeddings,
    patch physics, norms, the residual stream and the heads stay fp32: autocast around the
    whole forward rounded the quality head's sigmoid to bf16 near 100 raw, where the
    calibration (a logit map) is steepest, and moved calibrated scores by up to 12.9 points;
    with the heads in fp32 they moved by at most 0.11 (benchmarks/RESULTS.md).
    """
    return map_blocks(model, Bf16Block, in_place)


__all__ = [
    "NATIVE_BF16_FLAGS",
    "PRECISIONS",
    "Bf16Block",
    "auto_precision_note",
    "cpu_flags",
    "map_blocks",
    "native_bf16",
    "resolve_precision",
    "with_bf16_blocks",
]
