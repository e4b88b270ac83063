"""The source manifest: validation, resolution from a local git mirror, sha256 checks, summary."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from mediqa_train.manifest import (
    COLUMNS,
    DEFAULT_MANIFEST,
    ManifestError,
    fetch_entry,
    fold_of,
    read_manifest,
    summary,
)
from PIL import Image
from typer.testing import CliRunner


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def mirror(tmp_path: Path) -> tuple[Path, str, dict[str, bytes]]:
    """A bare mirror `Owner+Name/repo` of a repository with two PNGs; (root, commit, files)."""
    work = tmp_path / "work"
    (work / "imgs").mkdir(parents=True)
    files: dict[str, bytes] = {}
    rng = np.random.default_rng(0)
    for name in ("imgs/a.png", "imgs/b one.png"):
        Image.fromarray(rng.integers(0, 255, (40, 48), dtype=np.uint8)).save(work / name)
        files[name] = (work / name).read_bytes()
    _git(work, "init", "-q")
    _git(work, "add", ".")
    _git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "images")
    commit = _git(work, "rev-parse", "HEAD")
    root = tmp_path / "mirrors"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(root / "Owner+Name" / "repo")],
                   check=True)
    return root, commit, files


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _row(commit: str, name: str, data: bytes, group: str = "g-1", **extra: str) -> dict:
    return {"origin": "github:Owner/Name", "revision": commit, "path": name,
            "sha256": hashlib.sha256(data).hexdigest(), "modality": "FUNDUS", "anatomy": "eye",
            "layout": "image", "group": group, "licence": "MIT", "ground_truth": "yes",
            "note": "", **extra}


def test_resolves_from_mirror_and_checks_sha(tmp_path, mirror) -> None:
    root, commit, files = mirror
    rows = [_row(commit, name, data, group=f"g-{i}") for i, (name, data) in
            enumerate(files.items())]
    entries = read_manifest(_write(tmp_path / "m.csv", rows))
    for entry in entries:
        path = fetch_entry(entry, tmp_path / "cache", root)
        assert path.read_bytes() == files[entry.path]
        assert path.suffix == ".png" and entry.sha256 in path.name  # no repo file name kept
    bad = read_manifest(_write(tmp_path / "bad.csv", [
        {**rows[0], "sha256": hashlib.sha256(b"other bytes").hexdigest()}]))[0]
    with pytest.raises(ManifestError, match="sha256 mismatch"):
        fetch_entry(bad, tmp_path / "cache2", root)
    assert not list((tmp_path / "cache2").rglob("*.png"))  # nothing left behind
    missing = read_manifest(_write(tmp_path / "missing.csv", [
        {**rows[0], "path": "imgs/none.png"}]))[0]
    with pytest.raises(ManifestError, match="not in the mirror"):
        fetch_entry(missing, tmp_path / "cache3", root)


def test_cached_file_with_wrong_bytes_is_refetched(tmp_path, mirror) -> None:
    root, commit, files = mirror
    entry = read_manifest(_write(tmp_path / "m.csv", [_row(commit, "imgs/a.png",
                                                           files["imgs/a.png"])]))[0]
    path = fetch_entry(entry, tmp_path / "cache", root)
    path.write_bytes(b"tampered")
    assert fetch_entry(entry, tmp_path / "cache", root).read_bytes() == files["imgs/a.png"]


@pytest.mark.parametrize(("change", "message"), [
    ({"origin": "gitlab:Owner/Name"}, "origin"),
    ({"revision": "abc"}, "revision"),
    ({"modality": "PET"}, "modality"),
    ({"group": ""}, "empty group"),
    ({"ground_truth": "maybe"}, "ground_truth"),
])
def test_bad_rows_name_their_line(tmp_path, mirror, change, message) -> None:
    _, commit, files = mirror
    good = _row(commit, "imgs/a.png", files["imgs/a.png"])
    with pytest.raises(ManifestError, match=f"line 3: .*{message}"):
        read_manifest(_write(tmp_path / "m.csv", [
            _row(commit, "imgs/b one.png", files["imgs/b one.png"]), {**good, **change}]))


def test_duplicate_bytes_rejected(tmp_path, mirror) -> None:
    _, commit, files = mirror
    row = _row(commit, "imgs/a.png", files["imgs/a.png"])
    with pytest.raises(ManifestError, match="same bytes as line 2"):
        read_manifest(_write(tmp_path / "m.csv", [row, {**row, "path": "copy.png"}]))


def test_corpus_builds_from_manifest_mirror(tmp_path, mirror) -> None:
    from mediqa_train.cli import app

    root, commit, files = mirror
    rows = [_row(commit, name, data, group=f"g-{i}") for i, (name, data) in
            enumerate(files.items())]
    manifest = _write(tmp_path / "m.csv", rows)
    out = tmp_path / "corpus"
    result = CliRunner().invoke(app, ["corpus", "--out", str(out), "--source", "none",
                                      "--manifest", str(manifest), "--mirror", str(root),
                                      "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert "2 of 2 files resolved" in result.output
    sources = [json.loads(line) for line in open(out / "sources.jsonl")]
    assert {s["modality"] for s in sources} == {"FUNDUS"}
    text = (out / "sources.jsonl").read_text() + (out / "manifest.jsonl").read_text()
    assert "b one" not in text and "imgs/" not in text  # repository paths never reach the corpus


def test_fold_is_stable_and_spread() -> None:
    folds = [fold_of(f"src-{i:04d}") for i in range(500)]
    assert fold_of("src-0001") == folds[1]
    assert min(np.bincount(folds)) > 60  # every fold gets its share


def test_committed_manifest_meets_the_group_counts() -> None:
    counts = summary(read_manifest(DEFAULT_MANIFEST))
    for modality in ("CT", "MR", "FUNDUS"):
        assert counts[modality]["groups"] >= 20, counts
    for modality in ("XR", "US", "HISTO"):
        assert counts[modality]["groups"] >= 10, counts


def test_sources_summary_json(tmp_path, mirror) -> None:
    from mediqa_train.cli import app

    _, commit, files = mirror
    manifest = _write(tmp_path / "m.csv", [_row(commit, n, d, group=f"g-{i % 1}")
                                           for i, (n, d) in enumerate(files.items())])
    result = CliRunner().invoke(app, ["sources", "--manifest", str(manifest), "--summary",
                                      "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"FUNDUS": {"groups": 1, "images": 2, "ground_truth": 2}}


def test_holdout_fold_leaves_its_groups_out(tmp_path, mirror) -> None:
    from mediqa_train.cli import app

    root, commit, files = mirror
    (a, data_a), (b, data_b) = files.items()
    assert fold_of("g-0") == 4 and fold_of("g-2") == 1
    manifest = _write(tmp_path / "m.csv", [_row(commit, a, data_a, group="g-0"),
                                           _row(commit, b, data_b, group="g-2")])
    result = CliRunner().invoke(app, ["corpus", "--out", str(tmp_path / "c"), "--source", "none",
                                      "--manifest", str(manifest), "--mirror", str(root),
                                      "--cache", str(tmp_path / "cache"), "--holdout-fold", "4"])
    assert result.exit_code == 0, result.output
    assert "1 of 1 files resolved" in result.output
    groups = {json.loads(line)["group"].split("#")[0]
              for line in open(tmp_path / "c" / "sources.jsonl")}
    assert groups == {"g-2"}
