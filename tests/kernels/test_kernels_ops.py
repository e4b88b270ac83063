"""The mediqa ops as torch sees them: opcheck, torch.compile, torch.export, TorchScript, and a CPU
path that never imports Triton."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mediqa_kernels  # noqa: F401  (registers torch.ops.mediqa)
import pytest
import torch
from torch.library import opcheck

from tests.kernels.cases import packed_qkv, saliency_batch

REPO = Path(__file__).resolve().parents[2]
LENGTHS = [1, 17, 0, 9]


class _TinyPackedModel(torch.nn.Module):
    """What the encoder does with the ops: attention on packed tokens, then patch selection."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(32, 32)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        cu_seqlens: torch.Tensor,
        images: torch.Tensor,
        image_cu: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = torch.ops.mediqa.varlen_attention(q, k, v, cu_seqlens, 17, None)
        scores, top = torch.ops.mediqa.saliency_topk(images, image_cu, 2)
        return self.proj(out), scores, top


def _inputs(requires_grad: bool = False) -> tuple[torch.Tensor, ...]:
    q, k, v, cu, _ = packed_qkv(LENGTHS, requires_grad=requires_grad)
    images, image_cu = saliency_batch([3, 0, 4])
    return q, k, v, cu, images, image_cu


def _assert_same(got: tuple[torch.Tensor, ...], want: tuple[torch.Tensor, ...]) -> None:
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


def test_opcheck_varlen_attention_public_forward_and_backward_ops() -> None:
    q, k, v, cu, max_len = packed_qkv(LENGTHS, requires_grad=True)
    opcheck(torch.ops.mediqa.varlen_attention.default, (q, k, v, cu, max_len, None))
    opcheck(torch.ops.mediqa.varlen_attention.default, (q, k, v, cu, max_len, 0.25))
    opcheck(torch.ops.mediqa.varlen_attention_forward.default, (q, k, v, cu, max_len, 0.25))
    out, lse = torch.ops.mediqa.varlen_attention_forward(q, k, v, cu, max_len, 0.25)
    dout = torch.randn_like(out)
    args = (dout, q.detach(), k.detach(), v.detach(), out.detach(), lse, cu, max_len, 0.25)
    opcheck(torch.ops.mediqa.varlen_attention_backward.default, args)


def test_opcheck_saliency_topk() -> None:
    images, cu = saliency_batch([3, 0, 4], channels=2)
    opcheck(torch.ops.mediqa.saliency_topk.default, (images, cu, 2))
    opcheck(torch.ops.mediqa.saliency_topk.default, (images.half(), cu, 5))


def test_torchscript_module_calls_both_ops() -> None:
    model = _TinyPackedModel()
    scripted = torch.jit.script(model)
    assert "mediqa::varlen_attention" in str(scripted.graph)
    assert "mediqa::saliency_topk" in str(scripted.graph)
    inputs = _inputs()
    _assert_same(scripted(*inputs), model(*inputs))


def test_torch_compile_fullgraph_matches_eager_including_gradients() -> None:
    model = _TinyPackedModel()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    inputs = _inputs(requires_grad=True)
    got, want = compiled(*inputs), model(*inputs)
    _assert_same(got, want)
    q, k, v = inputs[:3]
    grads_got = torch.autograd.grad(got[0].square().sum(), (q, k, v))
    grads_want = torch.autograd.grad(want[0].square().sum(), (q, k, v))
    _assert_same(grads_got, grads_want)


def test_torch_compile_inductor_forward_matches_eager() -> None:
    model = _TinyPackedModel()
    compiled = torch.compile(model, fullgraph=True)
    inputs = _inputs()
    with torch.no_grad():
        _assert_same(compiled(*inputs), model(*inputs))


def test_torch_export_keeps_the_ops_and_generalises_over_token_count() -> None:
    model = _TinyPackedModel()
    tokens = torch.export.Dim("tokens", min=2, max=4096)
    items = torch.export.Dim("items", min=2, max=4096)
    bounds = torch.export.Dim("bounds", min=2, max=4096)
    # (S, k) outputs make torch's contiguity check guard S != 1: export for >= 2 segments.
    segments = torch.export.Dim("segments", min=3, max=4096)
    dynamic = ({0: tokens}, {0: tokens}, {0: tokens}, {0: bounds}, {0: items}, {0: segments})
    exported = torch.export.export(model, _inputs(), dynamic_shapes=dynamic)
    code = exported.graph_module.code
    assert "mediqa.varlen_attention" in code and "mediqa.saliency_topk" in code
    q, k, v, cu, _ = packed_qkv([5, 12, 3], seed=7)
    images, image_cu = saliency_batch([2, 6], seed=7)
    other = (q, k, v, cu, images, image_cu)
    _assert_same(exported.module()(*other), model(*other))


def test_cpu_path_never_imports_triton() -> None:
    code = (
        "import sys, torch, mediqa_kernels as mk\n"
        "q = torch.randn(10, 2, 32, requires_grad=True)\n"
        "cu = torch.tensor([0, 3, 10], dtype=torch.int32)\n"
        "mk.varlen_attention(q, q, q, cu, 7).sum().backward()\n"
        "mk.saliency_topk(torch.randn(4, 1, 5, 5), torch.tensor([0, 4], dtype=torch.int32), 2)\n"
        "assert 'triton' not in sys.modules, 'triton was imported'\n"
    )
    env = {key: val for key, val in os.environ.items() if key != "TRITON_INTERPRET"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("scale", [None, 0.5])
def test_public_function_and_torch_op_agree(scale: float | None) -> None:
    q, k, v, cu, max_len = packed_qkv(LENGTHS)
    torch.testing.assert_close(
        mediqa_kernels.varlen_attention(q, k, v, cu, max_len, scale),
        torch.ops.mediqa.varlen_attention(q, k, v, cu, max_len, scale),
        atol=0,
        rtol=0,
    )
