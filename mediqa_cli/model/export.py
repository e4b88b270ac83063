"""Compiled forms of MedIQANet: TorchScript and a torch.export program with dynamic batch shapes.

Both work because attention is the registered op `torch.ops.mediqa.varlen_attention` (see
layers.packed_attention), not Python code. Writing the artifacts to disk (`mediqa export`) is
the CLI's job; this module only knows how to trace the network correctly.
"""

from __future__ import annotations

import torch
from torch import nn

from mediqa_cli.model.network import MedIQANet
from mediqa_cli.model.packing import example_batch


def export_dynamic_shapes() -> tuple[object, ...]:
    """`dynamic_shapes` for MedIQANet.forward over `PackedBatch.args()`: patches and slices vary.

    max_seqlen is a Python int, which export bakes in as a constant: call an exported program
    with the max_seqlen it was exported with (`pack(..., max_seqlen=bound)`).
    """
    dyn = torch.export.Dim.DYNAMIC
    return ({0: dyn}, {0: dyn}, {0: dyn}, {0: dyn}, None, {0: dyn}, {0: dyn}, {0: dyn},
            {0: dyn})


def script_model(model: MedIQANet) -> torch.jit.ScriptModule:
    """torch.jit.script of the network in eval mode (deprecated upstream, requested here)."""
    return torch.jit.script(model.eval())


def export_model(model: MedIQANet, max_seqlen: int) -> torch.export.ExportedProgram:
    """torch.export program valid for any number of slices and patches.

    max_seqlen: the per-slice patch bound every later call must pass (e.g. the token budget).
    Traced with size-oblivious shapes so a batch of one slice or one patch is not a special case
    (without it export specialises sizes 0 and 1 and refuses single-slice batches).
    """
    sizes = (min(5, max_seqlen), max_seqlen, 2)
    example = example_batch(model.config, sizes)
    example.max_seqlen = max_seqlen
    module: nn.Module = model.eval()
    with torch.fx.experimental._config.patch(backed_size_oblivious=True):
        return torch.export.export(module, example.args(), dynamic_shapes=export_dynamic_shapes(),
                                   strict=False)


__all__ = ["export_dynamic_shapes", "export_model", "script_model"]
