"""PatchPhysics: the per-patch statistics move the way the physics says they should."""

from __future__ import annotations

import torch

from mediqa_cli.model.layers import PatchPhysics

P = 16


def _stats(physics: PatchPhysics, patches: torch.Tensor) -> torch.Tensor:
    """The (n, channels, n_stats) statistics the module embeds (captured at stats_fc1's input)."""
    seen: list[torch.Tensor] = []
    handle = physics.stats_fc1.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        physics(patches.reshape(patches.shape[0], -1))
    finally:
        handle.remove()
    return seen[0].reshape(patches.shape[0], physics.channels, physics.n_stats)


def _smooth_patches(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, P), torch.linspace(0, 1, P), indexing="ij")
    phase = torch.rand(n, 1, 1, generator=g) * 6.28
    base = 0.5 + 0.3 * torch.sin(3.0 * xx + 2.0 * yy + phase)
    return base.unsqueeze(1).expand(n, 3, P, P).contiguous()


def test_noise_raises_laplacian_energy_and_gaussianity() -> None:
    physics = PatchPhysics(3, P, 32)
    clean = _smooth_patches(8)
    g = torch.Generator().manual_seed(1)
    noisy = clean + 0.05 * torch.randn(clean.shape, generator=g)
    s_clean, s_noisy = _stats(physics, clean), _stats(physics, noisy)
    lap_rms, coarse_rms, grad_rms = 2, 3, 4
    assert (s_noisy[..., lap_rms] > s_clean[..., lap_rms] + 0.2).all()
    assert (s_noisy[..., grad_rms] > s_clean[..., grad_rms]).all()
    # Fine-scale energy grows more than coarse energy under white noise.
    assert ((s_noisy[..., lap_rms] - s_clean[..., lap_rms])
            > (s_noisy[..., coarse_rms] - s_clean[..., coarse_rms])).all()


def test_blur_lowers_laplacian_energy() -> None:
    physics = PatchPhysics(3, P, 32)
    g = torch.Generator().manual_seed(2)
    sharp = torch.rand(4, 3, P, P, generator=g)
    box = torch.full((3, 1, 3, 3), 1.0 / 9.0)
    blurred = torch.nn.functional.conv2d(sharp, box, padding=1, groups=3)
    assert (_stats(physics, blurred)[..., 2] < _stats(physics, sharp)[..., 2] - 0.1).all()


def test_eight_pixel_blocks_show_as_blockiness_and_clipping_is_counted() -> None:
    physics = PatchPhysics(3, P, 32)
    g = torch.Generator().manual_seed(3)
    fine = 0.5 + 0.01 * torch.randn(2, 3, P, P, generator=g)
    # Piecewise-constant 8x8 blocks, as heavy JPEG quantisation leaves them.
    levels = torch.tensor([[0.2, 0.6], [0.7, 0.3]])
    blocky = fine + levels.repeat_interleave(8, 0).repeat_interleave(8, 1)
    s_fine, s_blocky = _stats(physics, fine), _stats(physics, blocky.clamp(0, 1))
    assert (s_blocky[..., 6] > s_fine[..., 6] + 1.0).all()  # across columns
    assert (s_blocky[..., 7] > s_fine[..., 7] + 1.0).all()  # across rows
    saturated = torch.ones(1, 3, P, P)
    assert torch.allclose(_stats(physics, saturated)[..., 8], torch.ones(1, 3))


def test_output_is_finite_on_constant_and_extreme_patches() -> None:
    physics = PatchPhysics(3, P, 32)
    patches = torch.stack([torch.zeros(3, P, P), torch.ones(3, P, P),
                           torch.rand(3, P, P) > 0.5]).float()
    out = physics(patches.reshape(3, -1))
    assert out.shape == (3, 32) and torch.isfinite(out).all()
