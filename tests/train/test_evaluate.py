"""The measuring stick: ladder families, rivals, the statistics, and one small end-to-end run."""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest
from mediqa_train import evaluate as ev
from mediqa_train.eval_ladders import FAMILIES, ladder
from mediqa_train.evaluate import LadderResult, Table, ladder_srcc, pick_images, summarise
from mediqa_train.manifest import Entry
from mediqa_train.rivals import score_all, to_grey8


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a.astype(np.float64) - b) ** 2)))


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    """Real packaged images in the reader's units, one per modality."""
    import pydicom
    from pydicom.data import get_testdata_file
    from skimage import data

    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    hu = ct.pixel_array.astype(np.float32) * float(ct.RescaleSlope) + float(ct.RescaleIntercept)
    mr = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array.astype(np.float32)
    photo = data.retina()[::6, ::6].astype(np.float32)
    grey = data.camera()[::2, ::2].astype(np.float32)
    return {"CT": hu, "MR": mr, "XR": grey * 16.0, "US": grey, "FUNDUS": photo, "HISTO": photo,
            "NM": grey / 8.0}


@pytest.mark.parametrize("modality", sorted(FAMILIES))
def test_every_family_grows_with_its_level(images, modality) -> None:
    """Same shape and dtype, level 0 untouched, the harm (RMS from clean) grows level by level
    (gain-like families change the image at least as much at each step)."""
    image = images[modality]
    for family in FAMILIES[modality]:
        steps = ladder(image, (0.7, 0.7), family, seed=3)
        assert len(steps) == 6
        assert all(s.shape == image.shape and s.dtype == np.float32 for s in steps)
        assert np.array_equal(steps[0], image)
        distances = [_rms(s, image) for s in steps]
        assert all(b > a for a, b in zip(distances, distances[1:])), (family.name, distances)
        again = ladder(image, (0.7, 0.7), family, seed=3)
        assert all(np.array_equal(a, b) for a, b in zip(steps, again))  # reproducible


def test_rivals_prefer_the_clean_image(images) -> None:
    photo = images["FUNDUS"]
    noisy = ladder(photo, (1.0, 1.0), FAMILIES["FUNDUS"][3], seed=0)[5]
    clean_scores, noisy_scores = score_all(photo, "FUNDUS"), score_all(noisy, "FUNDUS")
    for name in ("brisque", "piqe", "niqe"):
        assert clean_scores[name] > noisy_scores[name], name  # higher is better after flipping


def test_grey8_windows() -> None:
    ct = np.array([[-2000.0, -1000.0], [0.0, 1000.0]])
    assert to_grey8(ct, "CT").tolist() == [[0, 0], [128, 255]]
    raw = np.array([[0.0, 4000.0], [2000.0, 1000.0]])
    assert to_grey8(raw, "MR").max() == 255 and to_grey8(raw, "MR").min() == 0


def test_ladder_srcc() -> None:
    assert ladder_srcc([6, 5, 4, 3, 2, 1]) == pytest.approx(1.0)
    assert ladder_srcc([1, 2, 3, 4, 5, 6]) == pytest.approx(-1.0)
    assert math.isnan(ladder_srcc([1, 1, 1, 1, 1, 1]))
    assert math.isnan(ladder_srcc([6, 5, math.nan, 3, 2, 1]))


def _table(n_groups: int, seed: int = 0) -> Table:
    """'good' ranks every ladder and separates clean from degraded across groups; 'noise' is
    random; 'same' equals 'good'; 'local' ranks within a ladder but each group sits on its own
    offset, so across groups it separates nothing."""
    rng = np.random.default_rng(seed)
    results = []
    for g in range(n_groups):
        offset = rng.normal(0, 100)
        for family in ("jpeg", "defocus"):
            good = list(np.linspace(90, 20, 6) + rng.normal(0, 1, 6))
            results.append(LadderResult("FUNDUS", family, f"g{g}", {
                "good": good, "same": list(good), "noise": list(rng.normal(0, 1, 6)),
                "local": list(np.linspace(5, 0, 6) + offset)}))
    return Table(results, ["good", "same", "noise", "local"])


def test_srcc_auc_and_intervals() -> None:
    table = _table(30)
    srcc = table.srcc("FUNDUS")
    assert srcc["good"]["mean"] == pytest.approx(1.0)
    assert srcc["local"]["mean"] == pytest.approx(1.0)
    assert abs(srcc["noise"]["mean"]) < 0.3
    assert table.auc("FUNDUS", "good") == pytest.approx(1.0)
    assert 0.3 < table.auc("FUNDUS", "local") < 0.7  # within-ladder ranks are not audit ranks
    low, high = table.bootstrap("FUNDUS", lambda w: table.srcc("FUNDUS", w)["noise"]["mean"])
    assert low < srcc["noise"]["mean"] < high and high - low < 0.6
    summary = summarise(table, "good", "same", n_boot=200)
    assert summary["modalities"]["FUNDUS"]["paired_srcc"] == (0.0, 0.0)  # a recipe vs itself
    versus_noise = summarise(table, "good", "noise", n_boot=200)["modalities"]["FUNDUS"]
    assert versus_noise["paired_srcc"][0] > 0.5  # a known-worse method: the interval excludes 0
    assert versus_noise["best_classical"] not in ("good", "noise")  # rivals only


def test_paired_family_intervals_find_the_one_family_that_changed() -> None:
    """A method equal to the reference on every family but one, where it is reversed: only
    that family's paired interval leaves zero (the mean's alone cannot say where)."""
    base = _table(30)
    changed = base.families("FUNDUS")[0]
    rows = [LadderResult(r.modality, r.family, r.group, {
        "good": r.values["good"],
        "partial": r.values["good"][::-1] if r.family == changed else list(r.values["good"])})
        for r in base.results]
    entry = summarise(Table(rows, ["good", "partial"]), "good", "partial",
                      n_boot=200)["modalities"]["FUNDUS"]
    intervals = entry["paired_family_srcc"]
    assert list(intervals) == base.families("FUNDUS") and len(intervals) > 1
    assert intervals[changed][0] > 1.5  # 1 - (-1), give or take the jitter
    assert all(intervals[f] == (0.0, 0.0) for f in intervals if f != changed)


def test_a_candidate_is_paired_with_the_mean_of_the_compared_seeds() -> None:
    """Why: one seed's draw of the baseline moves the stick as far as a recipe change does, so
    a candidate can be judged against the mean of the recipe's seeds."""
    table = _table(30)
    srcc = table.srcc("FUNDUS")
    both = summarise(table, "good", ["same", "noise"], n_boot=200)
    assert both["compared_with_mean_of"] == ["same", "noise"]
    pooled = both["pooled"]
    expected = srcc["good"]["mean"] - (srcc["same"]["mean"] + srcc["noise"]["mean"]) / 2
    low, high = pooled["ci_difference"]
    assert low <= expected <= high and low > 0.2  # half a random method: a clear gain
    # two copies of one seed are that seed
    twice = summarise(table, "good", ["same", "same"], n_boot=200)
    assert twice["modalities"]["FUNDUS"]["paired_srcc"] == (0.0, 0.0)
    assert twice["pooled"]["ci_difference"] == (0.0, 0.0)
    assert both["modalities"]["FUNDUS"]["best_classical"] == "local"  # neither seed is a rival


def test_a_further_seed_joins_the_paired_ladders_as_its_own_column() -> None:
    from mediqa_train.evaluate import add_compare

    paired = [LadderResult("MR", "noise", "g1", {"model": [9, 8, 7, 6, 5, 4],
                                                 "compare": [1, 2, 3, 4, 5, 6]}),
              LadderResult("MR", "bias", "g1", {"model": [9] * 6, "compare": [1] * 6})]
    seed2 = [LadderResult("MR", "noise", "g1", {"model": [6, 5, 4, 3, 2, 1], "piqe": [0] * 6})]
    out = add_compare(paired, seed2, "compare_2")
    assert len(out) == 1  # the bias ladder has no score of the second seed
    assert out[0].values == {"model": [9, 8, 7, 6, 5, 4], "compare": [1, 2, 3, 4, 5, 6],
                             "compare_2": [6, 5, 4, 3, 2, 1]}


def test_auc_ignores_pairs_of_one_group() -> None:
    """A group's own degraded copies never count against its clean image."""
    results = [LadderResult("US", "gain", f"g{g}", {"m": [10.0 * g + 5] + [10.0 * g + 4] * 5})
               for g in range(4)]
    table = Table(results, ["m"])
    # clean of g beats degraded of g' < g only: 6 of 12 ordered cross pairs
    assert table.auc("US", "m") == pytest.approx(0.5)


def test_pick_images_prefers_original_pixels() -> None:
    def entry(sha: str, group: str, truth: bool) -> Entry:
        return Entry("github:a/b", "0" * 40, f"{sha}.png", sha * 64, "XR", "chest", "image",
                     group, "MIT", truth)

    chosen = pick_images([entry("a", "g1", False), entry("b", "g1", True),
                          entry("c", "g2", False), entry("d", "g3", True)], 2)
    assert sorted(e.sha256[0] for e in chosen) == ["b", "d"]  # original pixels first, one a group


@pytest.mark.slow
def test_evaluate_end_to_end(tmp_path) -> None:
    """Two fundus photographs in a local git mirror, scored by the shipped weights and the
    rivals; the JSON holds every ladder and the summary."""
    from mediqa_train.cli import app
    from PIL import Image
    from skimage import data
    from typer.testing import CliRunner

    work = tmp_path / "work"
    work.mkdir()
    retina = data.retina()
    for k, (top, left) in enumerate(((300, 300), (700, 650))):
        Image.fromarray(retina[top:top + 256, left:left + 256]).save(work / f"p{k}.png")
    git = ["git", "-C", str(work)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
                   check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True,
                            text=True).stdout.strip()
    subprocess.run(["git", "clone", "-q", "--bare", str(work),
                    str(tmp_path / "mirrors" / "Owner+Name" / "repo")], check=True)
    import hashlib

    lines = ["origin,revision,path,sha256,modality,anatomy,layout,group,licence,ground_truth,"
             "note"]
    for k in range(2):
        sha = hashlib.sha256((work / f"p{k}.png").read_bytes()).hexdigest()
        lines.append(f"github:Owner/Name,{commit},p{k}.png,{sha},FUNDUS,eye,image,g-{k},MIT,yes,")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(app, [
        "evaluate", "--weights", "weights", "--manifest", str(tmp_path / "m.csv"),
        "--mirror", str(tmp_path / "mirrors"), "--cache", str(tmp_path / "cache"),
        "--out", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert len(saved["ladders"]) == 2 * len(FAMILIES["FUNDUS"])
    row = saved["ladders"][0]
    assert {"model", "brisque", "piqe", "niqe", "iqm_snr"} <= set(row["values"])
    assert all(len(v) == 6 for v in row["values"].values())
    assert all(x is not None for x in row["values"]["model"])  # the product scored every image
    assert "FUNDUS" in saved["summary"]["modalities"]
    assert "within-ladder SRCC" in result.output and "cross-image AUC" in result.output


def test_an_earlier_run_pairs_ladder_by_ladder_with_its_rivals() -> None:
    from mediqa_train.evaluate import pair_with

    new = [LadderResult("MR", "noise", "g1", {"model": [9, 8, 7, 6, 5, 4]}),
           LadderResult("MR", "bias", "g1", {"model": [9, 9, 9, 9, 9, 9]})]
    old = [LadderResult("MR", "noise", "g1", {"model": [1, 2, 3, 4, 5, 6],
                                              "piqe": [6, 5, 4, 3, 2, 1]}),
           LadderResult("MR", "noise", "g2", {"model": [1] * 6})]
    paired = pair_with(new, old)
    assert len(paired) == 1  # the bias ladder has no partner, g2 no new score
    assert paired[0].values == {"model": [9, 8, 7, 6, 5, 4], "compare": [1, 2, 3, 4, 5, 6],
                                "piqe": [6, 5, 4, 3, 2, 1]}


def test_pairing_keeps_each_ladders_own_rivals_and_fills_only_the_missing_ones() -> None:
    """A read without rivals pooled with one that has them (session 36's crash: the pooled
    rows lost their own rival columns and the table asked for a column no row had)."""
    from mediqa_train.evaluate import pair_with

    with_rivals = LadderResult("CT", "dose", "c1", {"model": [6, 5, 4, 3, 2, 1],
                                                     "piqe": [1, 2, 3, 4, 5, 6]})
    without = LadderResult("MR", "noise", "m1", {"model": [6, 5, 4, 3, 2, 1]})
    old = [LadderResult("CT", "dose", "c1", {"model": [1] * 6, "piqe": [0] * 6}),
           LadderResult("MR", "noise", "m1", {"model": [2] * 6, "piqe": [6, 5, 4, 3, 2, 1]})]
    paired = {r.modality: r.values for r in pair_with([with_rivals, without], old)}
    assert paired["CT"]["piqe"] == [1, 2, 3, 4, 5, 6]  # its own column, not the earlier one
    assert paired["MR"]["piqe"] == [6, 5, 4, 3, 2, 1]  # filled from the earlier read
    table = Table(list(pair_with([with_rivals, without], old)), ["model", "compare", "piqe"])
    assert table.srcc("MR")["piqe"]["mean"] == 1.0 and table.srcc("CT")["piqe"]["mean"] == -1.0


def test_pooled_reads_keep_a_rival_only_where_every_ladder_has_it() -> None:
    """Fold reads pooled where one fold was read without rivals: the rival is left out of that
    modality (not averaged over the patients that happened to have it), kept elsewhere, and a
    table over rows that lack a column reads it as not scored instead of failing."""
    from mediqa_train.evaluate import common_columns

    rows = [LadderResult("MR", "noise", "a", {"model": [6, 5, 4, 3, 2, 1], "piqe": [1] * 6}),
            LadderResult("MR", "noise", "b", {"model": [6, 5, 4, 3, 2, 1]}),
            LadderResult("CT", "dose", "c", {"model": [6, 5, 4, 3, 2, 1],
                                             "piqe": [6, 5, 4, 3, 2, 1]})]
    kept, dropped = common_columns(rows)
    assert dropped == {"MR": ["piqe"]}
    assert [sorted(r.values) for r in kept] == [["model"], ["model"], ["model", "piqe"]]
    table = Table(kept, ["model", "piqe"])
    assert math.isnan(table.srcc("MR")["piqe"]["mean"]) and table.srcc("MR")["model"]["mean"] == 1
    assert table.srcc("CT")["piqe"]["mean"] == 1.0
    assert math.isnan(table.auc("MR", "piqe"))


def test_the_motion_ladder_mixes_k_space_rather_than_moving_the_slice(images) -> None:
    """The k-space centre comes from the still object, so a heavy motion step keeps the clean
    slice's coarse picture and differs from it in ghosts and edges; a slice merely rotated and
    shifted by as much (what a k-space split along a one-line axis yields) differs everywhere."""
    from scipy import ndimage

    mr = images["MR"]
    family = next(f for f in FAMILIES["MR"] if f.name == "motion")
    step = ladder(mr, (1.0, 1.0), family, seed=3)[5]
    rigid = ndimage.shift(ndimage.rotate(mr, 8.0, reshape=False, order=1), (4.0, 4.0), order=1)

    def coarse_share(moved: np.ndarray) -> float:
        """Share of the change that survives a coarse low-pass."""
        change = moved.astype(np.float64) - mr
        return _rms(ndimage.gaussian_filter(change, 6.0), np.zeros_like(change)) / _rms(
            change, np.zeros_like(change))

    assert coarse_share(step) < 0.5 * coarse_share(rigid)


def test_rankings_read_the_unrounded_score_that_the_report_rounds(weights_dir) -> None:
    """Near the top of the raw scale neighbouring ladder steps differ in the fourth decimal: the
    report keeps two, the result keeps the score itself, and the stick reads that one."""
    rng = np.random.default_rng(0)
    pixels = (rng.random((48, 40)) * 200).astype(np.float32)
    base = ev.EvalImage("synthetic", "g-0", "MR", "head", pixels, (1.0, 1.0))
    rows = ev.WeightSet("m", weights_dir).score([pixels, pixels * 0.5], base, "t")
    for row in rows:
        assert row.status == "ok" and row.exact_score is not None
        assert row.score == round(row.exact_score, 2)
        assert ev._score_of(row) == row.exact_score
        assert "exact_score" not in row.column_values()  # never a report column
    assert ev._score_of({"status": "ok", "score": 99.99}) == 99.99  # a report row as read back


def test_auc_by_family_shows_which_familys_steps_the_clean_images_fail_to_beat() -> None:
    """One family whose steps score as high as clean images (a fault the method does not see)
    reads 0.5 on its own and pulls the pooled AUC between the two families' values."""
    results = []
    for g in range(6):
        clean = 50.0 + g  # clean images differ a little between groups
        results.append(LadderResult("MR", "noise", f"g{g}", {"m": [clean] + [10.0] * 5}))
        results.append(LadderResult("MR", "bias", f"g{g}", {"m": [clean] * 6}))
    table = Table(results, ["m"])
    by_family = table.auc_by_family("MR", "m")
    assert by_family["noise"] == pytest.approx(1.0)
    assert by_family["bias"] == pytest.approx(0.5)  # other groups' steps = their clean: half
    assert by_family["bias"] < table.auc("MR", "m") < by_family["noise"]
    summary = summarise(table, "m", n_boot=20)
    assert summary["modalities"]["MR"]["auc_by_family"]["m"] == by_family
