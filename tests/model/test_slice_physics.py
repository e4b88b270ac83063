"""The whole-slice physics measures (mediqa_cli.physics) on images whose answer is known, and the
physics tokens they feed (MedIQANet with `physics_tokens`)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from mediqa_cli.model.config import ModelConfig
from mediqa_cli.model.export import export_model, script_model
from mediqa_cli.model.network import MedIQANet
from mediqa_cli.model.packing import example_batch
from mediqa_cli.physics import N_PHYSICS, PHYSICS_FEATURES, slice_physics

F = {name: i for i, name in enumerate(PHYSICS_FEATURES)}


def textured(side: int = 256, seed: int = 0) -> np.ndarray:
    """A natural-looking 8-bit texture (smoothed noise with edges), values 20..235."""
    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.normal(size=(side, side)), 4)
    base += (np.add.outer(np.arange(side), np.arange(side)) % 64 < 32) * 0.5 * base.std()
    base = (base - base.min()) / (base.max() - base.min())
    return np.round(20 + 215 * base).astype(np.float32)


def disc(side: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """An MR-like bright disc with texture on a dark, slightly noisy background; and its mask."""
    yy, xx = np.mgrid[:side, :side]
    inside = (yy - side / 2) ** 2 + (xx - side / 2) ** 2 < (side / 4) ** 2
    rng = np.random.default_rng(1)
    image = np.where(inside, 600 + 200 * ndimage.gaussian_filter(rng.normal(size=inside.shape), 3),
                     0.0)
    return np.abs(image + rng.normal(0, 5, inside.shape)).astype(np.float32), inside


def test_noise_is_the_robust_sigma_over_the_robust_range() -> None:
    rng = np.random.default_rng(0)
    flat = np.full((256, 256), 1000.0) + rng.normal(0, 10, (256, 256))
    ramp = flat + np.linspace(0, 2000, 256)[None, :]  # linear structure: Immerkaer cancels it
    span = np.percentile(ramp, 99.5) - np.percentile(ramp, 1)
    got = slice_physics(ramp.astype(np.float32), "MR")[F["noise"]]
    assert got == pytest.approx(math.log10(10 / span), abs=0.05)


def test_noise_blur_and_jpeg_move_their_measures_the_known_way() -> None:
    clean = textured()
    rng = np.random.default_rng(2)
    noisy = np.clip(clean + rng.normal(0, 12, clean.shape), 0, 255).round()
    blurred = ndimage.gaussian_filter(clean, 2.5).round()
    buf = io.BytesIO()
    Image.fromarray(clean.astype(np.uint8)).save(buf, "JPEG", quality=8)
    jpeg = np.asarray(Image.open(buf), dtype=np.float32)
    c, n, b, j = (slice_physics(x, "XR") for x in (clean, noisy, blurred, jpeg))
    assert n[F["noise"]] > c[F["noise"]] + 0.5
    assert b[F["spectral_slope"]] < c[F["spectral_slope"]] - 1.0  # blur steepens the spectrum
    assert n[F["spectral_slope"]] > c[F["spectral_slope"]]  # white noise flattens it
    assert b[F["mscn_neighbour"]] > c[F["mscn_neighbour"]]
    assert abs(c[F["blockiness"]]) < 0.05 and j[F["blockiness"]] > 0.15


@pytest.mark.parametrize("side", [528, 600, 605, 611])
def test_jpeg_blocks_are_read_on_the_file_grid_whatever_the_crop_offset(side: int) -> None:
    """Above 512 px the local measures read a central crop; its corner must sit on the file's
    8-pixel grid, or the block edges count as steps inside blocks and blockiness falls as the
    JPEG quality falls (crop offsets 8, 44, 46 and 49 here: only the first is on the grid)."""
    clean = textured(side, seed=3)
    levels = []
    for quality in (95, 30, 8):
        buf = io.BytesIO()
        Image.fromarray(clean.astype(np.uint8)).save(buf, "JPEG", quality=quality)
        levels.append(slice_physics(np.asarray(Image.open(buf), dtype=np.float32),
                                    "FUNDUS")[F["blockiness"]])
    assert levels[0] < levels[1] < levels[2] and levels[2] > levels[0] + 0.15


def test_exposure_shows_in_headroom_display_mean_and_clipping() -> None:
    clean = textured()
    dark = np.round(clean * 0.4)
    burnt = np.minimum(clean * 1.6, 255).round()
    c, d, b = (slice_physics(x, "XR") for x in (clean, dark, burnt))
    assert d[F["headroom"]] == pytest.approx(0.4 * c[F["headroom"]], rel=0.05)
    assert d[F["display_mean"]] == pytest.approx(0.4 * c[F["display_mean"]], rel=0.05)
    frac_255 = float(np.mean(burnt == 255))
    assert b[F["clip_high"]] == pytest.approx(math.log10(frac_255), abs=0.05)
    assert math.isnan(slice_physics(clean - 128.0, "XR")[F["headroom"]])  # negative values


def test_no_measure_tells_integer_pixels_from_floats() -> None:
    """Training sees resampled float slices, scoring reads integer files: a measure that differed
    between the two would teach the network that integer pixels mean a clean image."""
    clean = textured()
    dither = np.random.default_rng(0).uniform(-1e-3, 1e-3, clean.shape).astype(np.float32)
    as_int, as_float = slice_physics(clean, "MR"), slice_physics(clean + 1e-3 + dither, "MR")
    np.testing.assert_allclose(as_float, as_int, rtol=1e-3, atol=1e-3)


def test_clipping_survives_a_dither() -> None:
    """Exact ties at the extremes vanish when a slice is resampled; the clipping measures must
    still count the burnt-out pixels."""
    burnt = np.minimum(textured() * 1.6, 255).round()
    dither = np.random.default_rng(1).uniform(-1e-3, 1e-3, burnt.shape)
    exact, dithered = slice_physics(burnt, "XR"), slice_physics(burnt + dither, "XR")
    for name in ("clip_low", "clip_high"):
        assert dithered[F[name]] == pytest.approx(exact[F[name]], abs=1e-3)
    assert exact[F["clip_high"]] > -1.5  # burnt-out pixels counted at all


def test_ghosts_and_bias_fields_raise_their_measures() -> None:
    image, inside = disc()
    ghost = image + 0.15 * np.roll(image, 70, axis=0)  # a replica along the phase-encode axis
    yy = np.mgrid[:256, :256][0] / 256.0
    biased = image * (0.5 + yy)
    plain, g, b = (slice_physics(x, "MR") for x in (image, ghost, biased))
    assert g[F["ghosting"]] > plain[F["ghosting"]] + 0.3
    assert b[F["bias"]] > plain[F["bias"]] + 0.3
    assert plain[F["fber"]] > 2.0  # a dark background: the energy ratio is large
    assert plain[F["foreground_fraction"]] == pytest.approx(inside.mean(), abs=0.05)


def test_undefined_measures_are_nan_and_colour_has_chroma() -> None:
    assert np.isnan(slice_physics(np.full((64, 64), np.nan, np.float32), "MR")).all()
    assert slice_physics(np.zeros((2, 2), np.float32), "MR").shape == (N_PHYSICS,)
    grey = slice_physics(textured(), "XR")
    assert math.isnan(grey[F["chroma"]])
    rgb = np.stack([textured(seed=s) for s in range(3)], axis=-1)
    assert slice_physics(rgb, "FUNDUS")[F["chroma"]] > 0.05
    tissue = textured()
    tissue[:, :40] = 255.0  # bright glass beside the stain
    assert np.isfinite(slice_physics(np.stack([tissue] * 3, -1), "HISTO")[F["fber"]])


CFG = ModelConfig.from_dict({**ModelConfig.tiny().to_dict(), "physics_tokens": True,
                     "max_patches": 4096, "keep_patches": 64})


def test_physics_tokens_change_the_output_and_tolerate_missing_values() -> None:
    torch.manual_seed(0)
    model = MedIQANet(CFG).eval()
    batch = example_batch(CFG, (5, 9))
    assert batch.physics.shape == (2, N_PHYSICS) and torch.isnan(batch.physics).any()
    with torch.inference_mode():
        base = model(*batch.args())
        batch.physics[1] = torch.nan_to_num(batch.physics[1]) + 3.0
        moved = model(*batch.args())
    assert all(torch.isfinite(t).all() for t in base[:4])
    torch.testing.assert_close(moved[1][0], base[1][0])  # slice 0 did not change
    assert not torch.allclose(moved[1][1], base[1][1])


def test_physics_tokens_survive_torchscript_and_export() -> None:
    torch.manual_seed(1)
    model = MedIQANet(CFG).eval()
    batch = example_batch(CFG, (7, 3, 1))
    with torch.inference_mode():
        want = model(*batch.args())
        scripted = script_model(model)(*batch.args())
    for got, ref in zip(scripted, want):
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    program = export_model(model, max_seqlen=16).module()
    from mediqa_cli.model.packing import pack

    del pack  # the exported bound: pack again with max_seqlen=16
    packed = example_batch(CFG, (7, 3, 1))
    packed.max_seqlen = 16
    with torch.inference_mode():
        exported = program(*packed.args())
    for got, ref in zip(exported, want):
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_preprocessing_settings_round_trip_with_the_config() -> None:
    back = ModelConfig.from_dict(CFG.to_dict())
    assert back == CFG
    assert (back.max_patches, back.keep_patches, back.physics_tokens) == (4096, 64, True)
    old = {k: v for k, v in ModelConfig.tiny().to_dict().items()
           if k not in ("physics_tokens", "max_patches", "keep_patches", "background_fraction")}
    legacy = ModelConfig.from_dict(old)  # weights saved before the settings moved here
    assert (legacy.max_patches, legacy.keep_patches, legacy.physics_tokens) == (1024, 256, False)


def test_the_preparer_tokenises_with_the_weights_settings() -> None:
    from mediqa_cli.scoring import SlicePreparer

    image = textured(400)
    tokens = SlicePreparer(CFG).slice_tokens([image], "XR", (0.2, 0.2), None, [0])[0]
    assert tokens.n_tokens == 64 and tokens.grid == (25, 25)  # native: no downscale
    np.testing.assert_array_equal(tokens.physics, slice_physics(image, "XR"))
    capped = ModelConfig.from_dict({**CFG.to_dict(), "max_patches": 100})
    small = SlicePreparer(capped).slice_tokens([image], "XR", (0.2, 0.2), None, [0])[0]
    assert small.grid[0] * small.grid[1] <= 100
