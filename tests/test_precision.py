"""The network's CPU arithmetic (`mediqa_cli.model.precision`, `mediqa score --precision`):
which precision `auto` picks, that bf16 runs only in the transformer blocks and moves scores
little, and that a bf16 scorer names itself in the model version.

The tiny random network of the `weights_dir` fixture stands in for the shipped weights. On it,
bf16 blocks moved a slice's raw quality (0-100) by at most 0.027 over five seeds and the
report's scores (two decimals) by at most 0.02 over three; the tolerances below leave a margin
of about 4x (the shipped network's trial: 0.16 raw, 0.11 calibrated, benchmarks/RESULTS.md).
That the outputs moved at all, the blocks' bf16 and the heads' fp32 are checked on their own,
so a wrapper that did nothing, or let bf16 reach the heads, fails.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import mediqa_cli.runner as runner_module
from mediqa_cli.cli import app
from mediqa_cli.model import precision as precision_module
from mediqa_cli.model.config import ModelConfig
from mediqa_cli.model.ensemble import MedIQAEnsemble, members_of
from mediqa_cli.model.network import MedIQANet
from mediqa_cli.model.packing import example_batch
from mediqa_cli.model.precision import (
    Bf16Block,
    cpu_flags,
    resolve_precision,
    with_bf16_blocks,
)
from mediqa_cli.options import OptionError, ScoreOptions
from mediqa_cli.runner import ScoreRequest, run_score
from mediqa_cli.scoring import load_scorer

CPU = torch.device("cpu")
CUDA = torch.device("cuda")
RAW_QUALITY_TOLERANCE = 0.1  # a slice's raw quality, 0-100 (observed at most 0.027)
SCORE_TOLERANCE = 0.1  # a scan's report score (observed at most 0.02)


@pytest.fixture
def native(monkeypatch: pytest.MonkeyPatch):
    """Sets what `native_bf16()` answers for the test."""

    def set_native(value: bool) -> None:
        monkeypatch.setattr(precision_module, "native_bf16", lambda: value)

    return set_native


# -- which precision a scorer runs in --------------------------------------------------------


@pytest.mark.parametrize("has_native, device, backend, expected", [
    (True, CPU, "eager", "bf16"),
    (False, CPU, "eager", "fp32"),
    (True, CPU, "torchscript", "fp32"),
    (True, CPU, "export", "fp32"),
    (True, CPU, "compile", "fp32"),
    (True, CUDA, "eager", "fp32"),
])
def test_auto_is_bf16_only_on_a_native_bf16_cpu_with_the_eager_backend(
        native, has_native: bool, device: torch.device, backend: str, expected: str):
    native(has_native)
    assert resolve_precision("auto", device, backend) == expected


@pytest.mark.parametrize("has_native", [True, False])
@pytest.mark.parametrize("backend", ["eager", "torchscript", "export", "compile"])
def test_fp32_is_always_fp32(native, has_native: bool, backend: str):
    native(has_native)
    assert resolve_precision("fp32", CPU, backend) == "fp32"
    assert resolve_precision("fp32", CUDA, backend) == "fp32"


@pytest.mark.parametrize("device, backend, words", [
    (CUDA, "eager", ["cuda", "--device cpu"]),
    (CPU, "torchscript", ["torchscript", "eager"]),
    (CPU, "export", ["export", "eager"]),
    (CPU, "compile", ["compile", "eager"]),
])
def test_bf16_elsewhere_than_eager_on_the_cpu_is_refused(native, device, backend, words):
    native(True)
    with pytest.raises(ValueError, match="--precision bf16") as refused:
        resolve_precision("bf16", device, backend)
    for word in words:
        assert word in str(refused.value)


def test_bf16_without_native_support_runs_emulated_with_a_warning(
        native, caplog: pytest.LogCaptureFixture):
    native(False)
    with caplog.at_level("WARNING", logger="mediqa"):
        assert resolve_precision("bf16", CPU, "eager") == "bf16"
    assert "emulated" in caplog.text
    native(True)
    caplog.clear()
    with caplog.at_level("WARNING", logger="mediqa"):
        assert resolve_precision("bf16", CPU, "eager") == "bf16"
    assert not caplog.text


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="fp16"):
        resolve_precision("fp16", CPU, "eager")


def test_native_bf16_reads_the_cpu_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    epyc = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
    sapphire = "processor\t: 0\nflags\t\t: avx512f amx_tile amx_bf16 amx_int8\n"
    older = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"
    arm = "processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n"  # not a flag this module knows
    read = precision_module.native_bf16.__wrapped__  # the uncached function
    for text, expected in ((epyc, True), (sapphire, True), (older, False), (arm, False),
                           ("", False)):
        (tmp_path / "cpuinfo").write_text(text)
        monkeypatch.setattr(precision_module, "_CPUINFO", tmp_path / "cpuinfo")
        assert read() is expected, text
    monkeypatch.setattr(precision_module, "_CPUINFO", tmp_path / "missing")
    assert read() is False
    assert "avx512_bf16" in cpu_flags(epyc) and cpu_flags(arm) == frozenset()


# -- what bf16 changes in the network --------------------------------------------------------


def _network(seed: int = 0) -> MedIQANet:
    torch.manual_seed(seed)
    return MedIQANet(ModelConfig.tiny()).eval()


def test_the_wrapper_wraps_every_block_of_every_member_and_leaves_the_model_alone():
    ensemble = MedIQAEnsemble.of([_network(0), _network(1)])
    wrapped = with_bf16_blocks(ensemble)
    for network in members_of(wrapped):
        blocks = [*network.context_blocks, *network.blocks]
        assert blocks and all(isinstance(b, Bf16Block) for b in blocks)
    for network in members_of(ensemble):  # a copy: the fp32 model is untouched
        assert not any(isinstance(b, Bf16Block)
                       for b in [*network.context_blocks, *network.blocks])
    same = with_bf16_blocks(ensemble, in_place=True)  # unless asked to wrap its own blocks
    assert same is ensemble and all(isinstance(b, Bf16Block) for network in members_of(same)
                                    for b in [*network.context_blocks, *network.blocks])


def test_bf16_runs_in_the_blocks_only_and_moves_outputs_little():
    network = _network()
    wrapped = with_bf16_blocks(network)
    seen: dict[str, object] = {}
    inner = wrapped.blocks[0].block  # type: ignore[union-attr]
    inner.fc1.register_forward_hook(lambda _m, _i, out: seen.__setitem__(
        "block", (out.dtype, torch.is_autocast_enabled("cpu"))))
    wrapped.quality_head.register_forward_hook(
        lambda _m, inputs, out: seen.__setitem__(
            "head", (inputs[0].dtype, out.dtype, torch.is_autocast_enabled("cpu"))))
    batch = example_batch(network.config, sizes=(5, 9, 40, 64))
    with torch.inference_mode():
        before = network(*batch.args())
        after = wrapped(*batch.args())
    assert seen["block"] == (torch.bfloat16, True)  # the blocks' matmuls run in bf16
    assert seen["head"] == (torch.float32, torch.float32, False)  # the heads do not
    severities, quality, modality_logits, anatomy_logits, modality_used, anatomy_used = after
    for value in (severities, quality, modality_logits, anatomy_logits):
        assert value.dtype == torch.float32
    moved = (quality - before[1]).abs()
    assert 0 < float(moved.max()) <= RAW_QUALITY_TOLERANCE  # changed, but only by rounding
    assert float((severities - before[0]).abs().max()) <= 0.005
    assert torch.equal(modality_used, before[4]) and torch.equal(anatomy_used, before[5])


# -- the scorer, the report and the options --------------------------------------------------


def test_the_version_says_bf16_where_the_scorer_runs_it(weights_dir: Path, native):
    from mediqa_cli.calibration import POOLED, Calibration, ScaleMap

    native(True)
    bf16 = load_scorer(weights_dir, "cpu")
    assert (bf16.precision, bf16.version) == ("bf16", "t0+bf16")
    assert isinstance(bf16.model.blocks[0], Bf16Block)
    fp32 = load_scorer(weights_dir, "cpu", precision="fp32")
    assert (fp32.precision, fp32.version) == ("fp32", "t0")
    assert not isinstance(fp32.model.blocks[0], Bf16Block)
    scripted = load_scorer(weights_dir, "cpu", backend="torchscript")
    assert (scripted.precision, scripted.version) == ("fp32", "t0+torchscript")
    native(False)
    assert load_scorer(weights_dir, "cpu").version == "t0"
    Calibration({POOLED: ScaleMap((6.0, 5.0, 4.0))}, "test").save(weights_dir)
    calibrated = load_scorer(weights_dir, "cpu", views=2, precision="bf16")
    assert calibrated.version.startswith("t0+views2+bf16+cal-")  # the scale's digest last


def _run(root: Path, out: Path, **options: object) -> dict[str, dict[str, str]]:
    code = run_score(ScoreRequest(paths=[str(root)], out=str(out), workers=0, quiet=True,
                                  **options))  # type: ignore[arg-type]
    assert code == 0
    with open(out, newline="") as handle:
        return {row["scan_id"]: row for row in csv.DictReader(handle)}


def test_bf16_scores_match_fp32_scores_and_never_share_a_version(
        weights_dir: Path, archive: Path, tmp_path: Path):
    fp32 = _run(archive, tmp_path / "fp32.csv", precision="fp32")
    bf16 = _run(archive, tmp_path / "bf16.csv", precision="bf16")
    assert fp32.keys() == bf16.keys() and len(fp32) == 5
    for key, row in bf16.items():
        assert row["model_version"] == "t0+bf16" and fp32[key]["model_version"] == "t0"
        assert float(row["score"]) == pytest.approx(float(fp32[key]["score"]),
                                                    abs=SCORE_TOLERANCE)
    # --resume rescores the fp32 rows: the version differs, the options key does not.
    resumed = _run(archive, tmp_path / "fp32.csv", precision="bf16", resume=True)
    assert {row["model_version"] for row in resumed.values()} == {"t0+bf16"}
    assert {row["options"] for row in resumed.values()} == {r["options"] for r in fp32.values()}


def test_precision_is_a_checked_scoring_option():
    from mediqa_cli import options

    assert options.PRECISIONS == precision_module.PRECISIONS  # one tuple, read by both
    assert "precision" in options.SCORING_OPTIONS and ScoreOptions().precision == "auto"
    assert ScoreOptions(precision="BF16").precision == "bf16"
    with pytest.raises(OptionError, match="precision"):
        ScoreOptions(precision="fp16")
    for combination in ({"backend": "torchscript"}, {"backend": "export"}, {"device": "cuda"}):
        with pytest.raises(OptionError, match="precision"):
            ScoreOptions(precision="bf16", **combination)  # type: ignore[arg-type]
    assert ScoreOptions(precision="fp32", backend="export").precision == "fp32"
    assert ScoreOptions(precision="auto", device="cuda").precision == "auto"


def test_the_precision_flag_and_config_key_reach_the_request(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    seen: list[ScoreRequest] = []
    monkeypatch.setattr(runner_module, "run_score", lambda request: seen.append(request) or 0)
    cli = CliRunner()
    result = cli.invoke(app, ["score", str(tmp_path), "--out", "r.csv", "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    config = tmp_path / "mediqa.toml"
    config.write_text('precision = "bf16"\n')
    result = cli.invoke(app, ["score", str(tmp_path), "--out", "r.csv", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert [r.precision for r in seen] == ["fp32", "bf16"]
    for flags in (["--precision", "fp16"], ["--precision", "bf16", "--backend", "export"]):
        result = cli.invoke(app, ["score", str(tmp_path), "--out", "r.csv", *flags])
        assert result.exit_code == 2 and "--precision" in result.output, flags
    assert len(seen) == 2


def test_the_python_api_takes_precision(weights_dir: Path, archive: Path):
    import mediqa

    results = list(mediqa.score(archive / "CT_small.dcm", precision="fp32"))
    assert [r.model_version for r in results] == ["t0"]
    with pytest.raises(OptionError, match="precision"):
        mediqa.score(archive, precision="int8")


def test_info_says_what_auto_picks_here(native):
    native(True)
    result = CliRunner().invoke(app, ["info"])
    assert result.exit_code == 0
    assert "cpu precision" in result.output and "auto = bf16" in result.output
    native(False)
    assert "auto = fp32" in CliRunner().invoke(app, ["info"]).output
