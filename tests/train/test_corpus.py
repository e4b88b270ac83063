"""The training corpus: built from real packaged images through the product's readers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from mediqa_train.corpus import assign_splits, build_corpus, open_corpus
from mediqa_train.sources import EXCLUDED, SOURCES, excluded_reason

# Small but varied: two 2D CTs, a Siemens mosaic volume (reformats), a NIfTI volume, a colour
# fundus photo, a histology tile, a colour ultrasound frame, a CR radiograph and a 2D MR.
SUBSET = ["pydicom:CT_small", "pydicom:693_UNCR", "heudiconv:axasc35", "nibabel:anatomical",
          "skimage:retina", "skimage:ihc", "pydicom:color-pl", "pydicom:RG3_UNCR",
          "pydicom:MR_small"]


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, float]:
    out = tmp_path_factory.mktemp("corpus")
    start = time.perf_counter()
    summary = build_corpus(str(out), sources=SUBSET, max_side=128, seed=0, log=lambda _: None)
    return out, summary, time.perf_counter() - start


def _rows(path: Path, name: str) -> list[dict]:
    with open(path / name) as handle:
        return [json.loads(line) for line in handle]


def test_small_build_is_quick_and_reports_slices(small_corpus):
    out, summary, seconds = small_corpus
    assert seconds < 60
    assert summary["n_slices"] == len(_rows(out, "manifest.jsonl")) > 10
    assert set(summary["slices"]) == {"CT", "MR", "FUNDUS", "HISTO", "US", "XR"}


def test_no_source_group_lands_in_two_splits(small_corpus):
    out, _, _ = small_corpus
    splits: dict[str, set[str]] = {}
    for row in _rows(out, "manifest.jsonl"):
        splits.setdefault(row["group"], set()).add(row["split"])
    assert splits and all(len(s) == 1 for s in splits.values())


def test_every_modality_with_several_groups_has_a_test_group(small_corpus):
    out, _, _ = small_corpus
    groups: dict[str, dict[str, str]] = {}
    for row in _rows(out, "manifest.jsonl"):
        groups.setdefault(row["modality"], {})[row["group"]] = row["split"]
    for modality, members in groups.items():
        assert "test" in members.values(), modality


def test_single_image_modalities_are_cut_into_disjoint_regions(small_corpus):
    out, summary, _ = small_corpus
    assert "skimage:retina" in summary["regions_cut_from"]
    regions = [r for r in _rows(out, "manifest.jsonl") if r["source"].startswith("skimage:retina")]
    assert len({r["group"] for r in regions}) == 4
    assert {r["orientation"] for r in regions} == {"region"}


def test_excluded_files_are_absent(small_corpus):
    out, _, _ = small_corpus
    for row in _rows(out, "sources.jsonl"):
        for path in row["paths"]:
            assert excluded_reason(os.path.basename(path)) is None, path


def test_catalogue_never_lists_an_excluded_file():
    names = [os.path.basename(s.where[1]) for s in SOURCES]
    assert all(excluded_reason(n) is None for n in names)
    assert excluded_reason("MR_small_RLE.dcm") and excluded_reason("SC_rgb_jpeg.dcm")
    assert excluded_reason("liver_1frame.dcm") and "mlut_18.dcm" in EXCLUDED


def test_modality_labels_follow_known_sources(small_corpus):
    out, _, _ = small_corpus
    modality = {r["source"].split("#")[0]: r["modality"] for r in _rows(out, "manifest.jsonl")}
    assert modality["pydicom:CT_small"] == "CT"
    assert modality["skimage:retina"] == "FUNDUS"
    assert modality["skimage:ihc"] == "HISTO"
    assert modality["heudiconv:axasc35"] == "MR"
    assert modality["pydicom:RG3_UNCR"] == "XR"


def test_near_isotropic_volume_gives_three_orientations_with_physical_spacing(small_corpus):
    out, _, _ = small_corpus
    rows = [r for r in _rows(out, "manifest.jsonl") if r["source"] == "heudiconv:axasc35"]
    by_orientation = {r["orientation"]: r for r in rows}
    assert set(by_orientation) == {"native", "reformat_row", "reformat_col"}
    # EPI 64 x 64 x 35 at 3.25 x 3.25 x 3.6 mm: reformatted rows step by the slice spacing.
    assert by_orientation["native"]["spacing"] == pytest.approx([3.25, 3.25], abs=0.01)
    assert by_orientation["reformat_row"]["spacing"][0] == pytest.approx(3.6, abs=0.05)
    assert by_orientation["reformat_row"]["shape"][0] == 35


def test_long_sides_are_capped_and_spacing_grows(small_corpus):
    out, _, _ = small_corpus
    rows = _rows(out, "manifest.jsonl")
    assert max(max(r["shape"][-2:]) for r in rows) <= 128
    ct = next(r for r in rows if r["source"] == "pydicom:CT_small")
    assert ct["shape"] == [128, 128] and ct["spacing"][0] == pytest.approx(0.661, abs=1e-3)
    # 693_UNCR (512^2 at 0.479 mm) is halved before it is cut into four 128^2 regions.
    region = next(r for r in rows if r["source"].startswith("pydicom:693_UNCR#"))
    assert region["shape"] == [128, 128] and region["spacing"][0] == pytest.approx(0.958, abs=0.01)


def test_reader_gives_finite_physical_slices(small_corpus):
    out, _, _ = small_corpus
    corpus = open_corpus(str(out))
    assert len(corpus) == len(_rows(out, "manifest.jsonl"))
    for item in corpus:
        assert item.image.dtype == torch.float32 and torch.isfinite(item.image).all()
        assert item.image.dim() == 2 or item.image.shape[0] == 3
    ct = next(i for i in corpus if i.source == "pydicom:CT_small")
    assert ct.image.min() < -500 and ct.image.max() > 500  # HU kept, not normalised
    fundus = next(i for i in corpus if i.modality == "FUNDUS" and i.image.dim() == 3)
    assert 100 < float(fundus.image.max()) <= 255.5


def test_reader_filters_by_split_and_balances_modalities(small_corpus):
    out, _, _ = small_corpus
    train = open_corpus(str(out), split="train")
    assert {i.split for i in train} == {"train"}
    rng = torch.Generator().manual_seed(0)
    drawn = Counter(train.sample(rng).modality for _ in range(600))
    # MR has most slices; balanced sampling still draws every modality about equally often.
    assert set(drawn) == set(train.modalities)
    assert max(drawn.values()) < 2.5 * min(drawn.values())


def test_split_is_deterministic_for_a_seed_and_changes_with_it():
    groups = {"MR": Counter({f"g{i}": 1 + i % 3 for i in range(12)})}
    first, again = assign_splits(groups, seed=0), assign_splits(groups, seed=0)
    assert first == again
    assert any(assign_splits(groups, seed=s) != first for s in range(1, 5))
    assert Counter(first.values())["test"] >= 1 and Counter(first.values())["val"] >= 1


def test_split_keeps_a_dominant_volume_out_of_test():
    groups = {"MR": Counter({"template": 72, **{f"img{i}": 1 for i in range(6)}})}
    for seed in range(8):
        assert assign_splits(groups, seed)["template"] == "train"


def test_cli_builds_with_limit_sources(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "mediqa_train.cli", "corpus", "--out", str(tmp_path / "c"),
         "--limit-sources", "2", "--max-side", "64"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "CT" in result.stdout and "train slices" in result.stdout
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["n_slices"] > 0
    assert {r["modality"] for r in _rows(tmp_path / "c", "manifest.jsonl")} == {"CT"}


def _site_images(root: Path) -> Path:
    """A site's own images: a photograph, a gzipped NIfTI volume in a subfolder and a DICOM
    file named like a package test pattern, listed in a CSV with relative paths."""
    import shutil

    import nibabel as nib
    import numpy as np
    from PIL import Image
    from pydicom.data import get_testdata_file

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:80]
    photo = (120 + 60 * np.sin(xx / 7.0)[..., None] * np.cos(yy / 9.0)[..., None]
             + rng.normal(0, 5, (96, 80, 3))).clip(0, 255).astype(np.uint8)
    Image.fromarray(photo).save(root / "eye.png")
    (root / "brains").mkdir()
    volume = (100 + 50 * np.sin(np.mgrid[0:48, 0:48, 0:40][0] / 5.0)
              + rng.normal(0, 3, (48, 48, 40))).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.diag([1.0, 1.0, 1.2, 1.0])), root / "brains" / "t1.nii.gz")
    shutil.copy(get_testdata_file("CT_small.dcm"), root / "0001.dcm")  # "0001.dcm" is excluded
    (root / "list.csv").write_text(  # saved by a spreadsheet: with a byte-order mark
        "\ufeffpath,modality,anatomy,layout,group\n"
        "eye.png,fundus,eye,,patient-1\n"
        "brains/t1.nii.gz,MR,head,volume,patient-2\n"
        f"{root / '0001.dcm'},CT,abdomen,,\n")
    return root / "list.csv"


def test_a_sites_own_images_join_the_corpus_with_their_labels(tmp_path: Path):
    from mediqa_train.sources import read_image_list

    extra = read_image_list(str(_site_images(tmp_path)))
    assert [s.id for s in extra] == ["local:row2", "local:row3", "local:row4"]
    assert extra[0].modality == "FUNDUS" and extra[0].split_group == "local:patient-1"
    assert extra[2].split_group == extra[2].id  # no group: the image is its own
    out = tmp_path / "c"
    summary = build_corpus(str(out), sources=["pydicom:MR_small"], max_side=64, extra=extra,
                           log=lambda _: None)
    rows = _rows(out, "manifest.jsonl")
    by_source = Counter((r["source"].split("#")[0], r["modality"]) for r in rows)
    # One image of its modality: cut into four regions, as a packaged one would be.
    assert by_source[("local:row2", "FUNDUS")] == 4
    assert by_source[("local:row4", "CT")] == 4  # "0001.dcm" is not taken for a test pattern
    volume_rows = [r for r in rows if r["source"] == "local:row3"]
    assert {r["modality"] for r in volume_rows} == {"MR"}
    # 40 slices at 1 x 1 x 1.2 mm: near-isotropic, so reformatted like a packaged volume
    assert {r["orientation"] for r in volume_rows} == {"native", "reformat_row", "reformat_col"}
    written = "".join((out / f).read_text() for f in ("manifest.jsonl", "sources.jsonl",
                                                     "summary.json"))
    assert str(tmp_path) not in written and "eye.png" not in written and "t1.nii" not in written
    assert summary["n_slices"] == len(rows)


@pytest.mark.parametrize("line, message", [
    ("x.png,XRAY,chest", "modality 'XRAY'"),
    ("x.png,XR,elbowish", "anatomy 'elbowish'"),
    ("x.png,XR,chest,movie", "layout 'movie'"),
    (",XR,chest", "empty path"),
])
def test_an_image_list_with_a_bad_row_names_the_row(tmp_path: Path, line: str, message: str):
    from mediqa_train.sources import read_image_list

    csv_path = tmp_path / "list.csv"
    csv_path.write_text(f"path,modality,anatomy,layout\nok.png,XR,chest,\n{line}\n")
    with pytest.raises(ValueError, match=f"line 3: {message}"):
        read_image_list(str(csv_path))
    (tmp_path / "nocols.csv").write_text("file,modality\nx.png,XR\n")
    with pytest.raises(ValueError, match="missing column"):
        read_image_list(str(tmp_path / "nocols.csv"))
    result = subprocess.run(
        [sys.executable, "-m", "mediqa_train.cli", "corpus", "--out", str(tmp_path / "c"),
         "--images", str(csv_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "line 3" in result.stdout
