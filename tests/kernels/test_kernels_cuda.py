"""The compiled Triton kernels on a real GPU against the fp32 reference (skipped without CUDA).

The interpreter tests prove the kernels' logic on CPU with 16-row blocks; only a GPU proves the
compiled code: the real block configs, tensor-core fp16/bf16 dots, the saliency kernel's
last-arriver handshake under truly concurrent programs, and the model end to end. CI has no GPU:
run `python -m pytest tests/kernels/test_kernels_cuda.py` on one (benchmarks/RESULTS.md records
the last run, device and versions).

Errors are checked per packed sequence, relative to that sequence's reference norm, so a wrong
mask that spoils one short sequence in a long batch cannot hide behind the others.
"""

from __future__ import annotations

import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

import mediqa_kernels
from mediqa_kernels import _backend
from mediqa_kernels.saliency import segmented_topk_reference

from tests.kernels.cases import LENGTH_CASES, cu_from_lengths, packed_qkv, saliency_batch

CUDA = torch.device("cuda")

# The interpreter's awkward mixes plus what the GPU configs (64/128-row blocks) and the model see:
# a packed inference batch (up to 1024 tokens per slice) and sequences that straddle 64 and 128.
GPU_CASES: dict[str, list[int]] = {
    **LENGTH_CASES,
    "block_edges_64_128": [63, 64, 65, 127, 128, 129],
    "model_batch": [1024, 301, 77, 1, 640, 12],
    "long": [2048, 129],
}

# Per-sequence ||got - want|| / ||want|| bounds against the fp32 reference. The norm is floored
# at an RMS of RMS_FLOOR per element: a one-token sequence's dq is exactly zero, so a relative
# error of its rounding noise would mean nothing.
REL_ERROR = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 3e-2}
RMS_FLOOR = 0.05


def _on_cuda(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.detach().to(CUDA).requires_grad_(t.requires_grad) for t in tensors]


def _assert_close_per_sequence(got: torch.Tensor, want: torch.Tensor, bounds: list[int],
                               dtype: torch.dtype, what: str) -> None:
    got, want = got.detach().float().cpu(), want.detach().float().cpu()
    assert torch.isfinite(got).all(), f"{what}: non-finite values"
    for index, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        if hi == lo:
            continue
        scale = max(want[lo:hi].norm().item(), RMS_FLOOR * want[lo:hi].numel() ** 0.5)
        error = (got[lo:hi] - want[lo:hi]).norm().item() / scale
        assert error < REL_ERROR[dtype], (
            f"{what}: sequence {index} (rows {lo}:{hi}) relative error {error:.2e} "
            f">= {REL_ERROR[dtype]:.0e} for {dtype}"
        )


@pytest.mark.parametrize("head_dim", [32, 64, 128])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", sorted(GPU_CASES))
def test_cuda_forward_and_backward_match_fp32_reference(case: str, dtype: torch.dtype,
                                                        head_dim: int) -> None:
    lengths = GPU_CASES[case]
    q, k, v, cu, max_len = packed_qkv(lengths, heads=3, head_dim=head_dim, dtype=dtype)
    bounds = cu.tolist()
    # The reference sees the same (rounded) inputs, in fp32, on the CPU.
    q32, k32, v32 = (t.float().requires_grad_(True) for t in (q, k, v))
    ref = mediqa_kernels.varlen_attention_reference(q32, k32, v32, cu)
    gen = torch.Generator().manual_seed(1)
    grad_out = torch.randn(ref.shape, generator=gen)
    want = torch.autograd.grad(ref, (q32, k32, v32), grad_out)

    qc, kc, vc = _on_cuda(q.requires_grad_(True), k.requires_grad_(True), v.requires_grad_(True))
    assert _backend.use_triton(qc)
    out = mediqa_kernels.varlen_attention(qc, kc, vc, cu.to(CUDA), max_len)
    assert out.dtype == dtype and out.device.type == "cuda"
    _assert_close_per_sequence(out, ref, bounds, dtype, "out")
    if sum(lengths) == 0:
        return
    got = torch.autograd.grad(out, (qc, kc, vc), grad_out.to(CUDA, dtype))
    for name, g, w in zip("qkv", got, want):
        _assert_close_per_sequence(g, w, bounds, dtype, f"d{name}")


def test_cuda_forward_reads_strided_fused_qkv_views() -> None:
    qkv = torch.randn(300, 3, 4, 32, generator=torch.Generator().manual_seed(2))
    cu = cu_from_lengths([129, 171])
    want = mediqa_kernels.varlen_attention_reference(*qkv.unbind(1), cu, softmax_scale=0.2)
    q, k, v = qkv.to(CUDA).unbind(1)  # non-contiguous views of one fused projection
    got = mediqa_kernels.varlen_attention(q, k, v, cu.to(CUDA), 171, 0.2)
    _assert_close_per_sequence(got, want, cu.tolist(), torch.float32, "strided")


def test_cuda_kernels_are_deterministic() -> None:
    q, k, v, cu, max_len = packed_qkv(GPU_CASES["model_batch"], heads=6, head_dim=32,
                                      dtype=torch.float16, requires_grad=True)
    qc, kc, vc = _on_cuda(q, k, v)
    cu = cu.to(CUDA)
    runs = []
    for _ in range(3):
        out = mediqa_kernels.varlen_attention(qc, kc, vc, cu, max_len)
        runs.append((out, *torch.autograd.grad(out.float().square().sum(), (qc, kc, vc))))
    for later in runs[1:]:
        for a, b in zip(runs[0], later):
            assert torch.equal(a, b)  # no atomics in the backward: bit-identical


def test_cuda_opcheck() -> None:
    q, k, v, cu, max_len = packed_qkv([5, 130], requires_grad=True)
    args = (*_on_cuda(q, k, v), cu.to(CUDA), max_len, None)
    torch.library.opcheck(torch.ops.mediqa.varlen_attention.default, args)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("case", sorted(LENGTH_CASES))
def test_cuda_saliency_matches_twin(case: str, dtype: torch.dtype) -> None:
    images, cu = saliency_batch(LENGTH_CASES[case], channels=2, dtype=dtype)
    want_scores, _ = mediqa_kernels.saliency_topk_reference(images, cu, 4)
    scores, top = mediqa_kernels.saliency_topk(images.to(CUDA), cu.to(CUDA), 4)
    torch.testing.assert_close(scores.cpu(), want_scores, atol=1e-5, rtol=1e-4)
    # Ranking is checked on the kernel's own scores: fp rounding may reorder near-ties.
    assert torch.equal(top.cpu(), segmented_topk_reference(scores.cpu(), cu.tolist(), 4))


def test_cuda_saliency_on_large_volumes_is_stable_across_launches() -> None:
    # Four volumes of 256x256 slices, one longer than the 1024-item rank block; repeated launches
    # catch a last-arriver race that a single lucky run would hide.
    lengths = [200, 64, 1100, 3]
    gen = torch.Generator().manual_seed(5)
    contrast = torch.rand(sum(lengths), 1, 1, 1, generator=gen) * 2 + 0.1
    images = (torch.randn(sum(lengths), 1, 256, 256, generator=gen) * contrast).to(torch.float16)
    cu = cu_from_lengths(lengths)
    images_cuda, cu_cuda = images.to(CUDA), cu.to(CUDA)
    first_scores, first_top = mediqa_kernels.saliency_topk(images_cuda, cu_cuda, 8)
    want_scores = mediqa_kernels.saliency_topk_reference(images, cu, 8)[0]
    torch.testing.assert_close(first_scores.cpu(), want_scores, atol=1e-4, rtol=1e-3)
    ranked = segmented_topk_reference(first_scores.cpu(), cu.tolist(), 8)
    assert torch.equal(first_top.cpu(), ranked)
    for _ in range(20):
        scores, top = mediqa_kernels.saliency_topk(images_cuda, cu_cuda, 8)
        assert torch.equal(top, first_top) and torch.equal(scores, first_scores)


def test_cuda_model_matches_cpu_on_a_packed_batch() -> None:
    """The shipped network on the GPU (fp32 and the scorer's bf16 autocast) against the CPU."""
    from mediqa_cli.model.packing import example_batch, unpack
    from mediqa_cli.model.weights import find_installed_weights, load_weights

    weights = find_installed_weights()
    if weights is None:
        pytest.skip("no weights installed")
    model, _ = load_weights(weights)
    batch = example_batch(model.config, [1024, 300, 77, 9, 512], seed=3)
    with torch.inference_mode():
        want = unpack(model(*batch.args()))
        model_cuda = model.to(CUDA)
        args = batch.to(CUDA).args()
        fp32 = unpack(model_cuda(*args))
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = unpack(model_cuda(*args))
    for w, a, b in zip(want, fp32, bf16):
        assert abs(a.quality - w.quality) < 0.05, (a.quality, w.quality)
        assert abs(b.quality - w.quality) < 2.0, (b.quality, w.quality)  # on the 0-100 scale
