"""Tests of the BSDS500 evaluator (benchmarks/scores.py) and its baselines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import baselines
import scores

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bsds500"


def halves(vertical: bool = True) -> np.ndarray:
    """A 4x4 map cut into left/right (or top/bottom) halves, labels 1 and 2."""
    labels = np.ones((4, 4), dtype=np.uint16)
    if vertical:
        labels[:, 2:] = 2
    else:
        labels[2:, :] = 2
    return labels


def row(stats: scores.ImageStats) -> dict[str, float]:
    return scores.combine([stats])


def test_identical_segmentations_score_perfectly() -> None:
    gt = halves()
    result = row(scores.image_stats(gt, gt))
    assert result["miou_all"] == pytest.approx(1.0)
    assert result["sc"] == pytest.approx(1.0)
    assert result["pri"] == pytest.approx(1.0)
    assert result["vi"] == pytest.approx(0.0, abs=1e-12)
    assert result["ap50"] == pytest.approx(1.0)
    assert result["ap70"] == pytest.approx(1.0)
    assert result["median_segments"] == 2


def test_one_prediction_for_two_equal_halves() -> None:
    result = row(scores.image_stats(np.zeros((4, 4), int), halves()))
    assert result["miou_all"] == pytest.approx(0.5)  # 8 / 16 for both halves
    assert result["sc"] == pytest.approx(0.5)
    assert result["pri"] == pytest.approx(56 / 120)  # 2 C(8, 2) of C(16, 2) pairs agree
    assert result["vi"] == pytest.approx(1.0)  # H(G) = 1 bit, H(P) = 0, I = 0
    assert result["ap50"] == 0.0  # IoU 0.5 does not exceed 0.5
    # the other way round: two predicted halves for one ground-truth segment
    swapped = row(scores.image_stats(halves(), np.ones((4, 4), int)))
    assert swapped["miou_all"] == pytest.approx(0.5)
    assert swapped["vi"] == pytest.approx(1.0)
    assert swapped["pri"] == pytest.approx(56 / 120)


def test_one_prediction_for_unequal_regions() -> None:
    gt = np.ones((4, 4), int)
    gt[:, 3] = 2  # 12 and 4 pixels
    result = row(scores.image_stats(np.ones((4, 4), int), gt))
    assert result["miou_all"] == pytest.approx((0.75 + 0.25) / 2)
    assert result["sc"] == pytest.approx((12 * 0.75 + 4 * 0.25) / 16)
    assert result["pri"] == pytest.approx((66 + 6) / 120)
    assert result["vi"] == pytest.approx(-(0.75 * np.log2(0.75) + 0.25 * np.log2(0.25)))
    # one segment, a hit at both thresholds, recalls one of the two segments
    assert result["ap50"] == pytest.approx(0.5)
    assert result["ap70"] == pytest.approx(0.5)


def test_fine_coarse_and_per_annotation_averages() -> None:
    quadrants = np.array([[1, 1, 2, 2]] * 2 + [[3, 3, 4, 4]] * 2)
    gts = np.stack([halves(), quadrants])
    stats = scores.image_stats(halves(), gts)
    result = row(stats)
    assert (stats.n_all, stats.n_fine, stats.n_coarse) == (6, 4, 2)
    assert result["miou_all"] == pytest.approx((2 * 1.0 + 4 * 0.5) / 6)
    assert result["miou_fine"] == pytest.approx(0.5)
    assert result["miou_coarse"] == pytest.approx(1.0)
    assert result["sc"] == pytest.approx((16 * 1.0 + 16 * 0.5) / 32)
    # quadrants: sum n^2 = 64, sum a^2 = 64, sum b^2 = 128 -> RI = 1 - 32 / 120
    assert result["pri"] == pytest.approx((1.0 + (1 - 32 / 120)) / 2)
    assert result["vi"] == pytest.approx((0.0 + (2 + 1 - 2 * 1)) / 2)
    # both predicted halves are hits; the 4 quadrants (IoU 0.5) are never recalled
    assert result["ap50"] == pytest.approx(1 / 6 + 1 / 6)


def test_fine_and_coarse_take_the_first_annotation_on_ties() -> None:
    stats = scores.image_stats(halves(), np.stack([halves(), halves(vertical=False)]))
    assert stats.iou_fine == pytest.approx(2.0)
    assert stats.iou_coarse == pytest.approx(2.0)
    assert stats.iou_all == pytest.approx(2.0 + 2 * 0.5 / 1.5)  # 4 / (8 + 8 - 4)


def test_average_precision_ranks_segments_by_size() -> None:
    gt = np.ones((4, 4), int)
    gt[:, 1:] = 2  # G1 = column 0 (4 px), G2 = columns 1..3 (12 px)
    pred = np.array([[0, 1, 1, 2]] * 4)  # P1 = column 0, P2 = columns 1-2, P3 = column 3
    result = row(scores.image_stats(pred, gt))
    # ranks: P2 (8 px, IoU 2/3 with G2), then P1 (IoU 1 with G1), then P3 (IoU 1/3)
    assert result["ap50"] == pytest.approx(1.0 * 0.5 + 1.0 * 0.5)
    assert result["ap70"] == pytest.approx(0.5 * 0.5)
    assert result["miou_all"] == pytest.approx((1.0 + 2 / 3) / 2)


def test_prediction_is_split_into_4_connected_segments() -> None:
    checkerboard = np.array([[0, 1], [1, 0]])
    assert scores.image_stats(checkerboard, np.ones((2, 2), int)).n_segments == 4
    stripes = np.array([[5, 7, 7, 5]] * 4)  # label 5 in two separate columns
    gt = np.array([[1, 2, 2, 3]] * 4)
    result = row(scores.image_stats(stripes, gt))
    assert result["miou_all"] == pytest.approx(1.0)
    unsplit = scores.image_stats(stripes, gt, connected_components=False)
    assert unsplit.n_segments == 2


def test_combine_pools_over_images() -> None:
    quadrants = np.array([[1, 1, 2, 2]] * 2 + [[3, 3, 4, 4]] * 2)
    perfect = scores.image_stats(halves(), halves())  # 2 segments with IoU 1
    blank = scores.image_stats(np.ones((4, 4), int), quadrants)  # 4 segments with IoU 1/4
    result = scores.combine([perfect, blank])
    assert result["miou_all"] == pytest.approx((2 + 4 * 0.25) / 6)  # not (1 + 0.25) / 2
    assert result["sc"] == pytest.approx((16 + 16 * 0.25) / 32)
    assert result["median_segments"] == 1.5
    assert result["n_images"] == 2


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="prediction"):
        scores.image_stats(np.ones((4, 5), int), halves())


def test_kmeans_baseline_is_deterministic() -> None:
    rng = np.random.default_rng(1)
    image = np.zeros((12, 12, 3), np.uint8)
    image[:, 6:] = 200
    image = (image + rng.integers(0, 20, image.shape)).astype(np.uint8)
    first = baselines.kmeans_segmentation(image, k=2, alpha=3, seed=0)
    assert np.array_equal(first, baselines.kmeans_segmentation(image, k=2, alpha=3, seed=0))
    assert first.max() == 2
    assert len(np.unique(first[:, :5])) == 1


# Computed once with this evaluator (blank and felzenszwalb(scale=500, sigma=0.5,
# min_size=20)) on val images 101085, 108070, 130026; the full val split reproduces the
# reference rows of the data set's README to 5e-5.
REGRESSION_IDS = ("101085", "108070", "130026")
EXPECTED = {
    "blank": {
        "miou_all": 0.05682,
        "miou_fine": 0.03409,
        "miou_coarse": 0.11538,
        "sc": 0.38528,
        "pri": 0.38527,
        "vi": 2.10172,
        "ap50": 0.08750,
        "ap70": 0.05389,
        "median_segments": 1,
    },
    "graph": {
        "miou_all": 0.37751,
        "miou_fine": 0.35558,
        "miou_coarse": 0.41532,
        "sc": 0.40011,
        "pri": 0.68064,
        "vi": 3.49202,
        "ap50": 0.08499,
        "ap70": 0.02129,
        "median_segments": 749,
    },
}


@pytest.mark.parametrize("method", ["blank", "graph"])
def test_scores_on_val_images_match_the_recorded_numbers(method: str) -> None:
    if not (DATA / "val_ids.txt").is_file():
        pytest.skip(f"BSDS500 data not found at {DATA}")
    from skimage import io

    segment = baselines.blank if method == "blank" else baselines.graph_based
    stats = []
    for image_id in REGRESSION_IDS:
        image = io.imread(DATA / "val" / f"{image_id}.jpg")
        with np.load(DATA / "val" / f"{image_id}_gt.npz") as npz:
            stats.append(scores.image_stats(segment(image), npz["seg"]))
    result = scores.combine(stats)
    for key, expected in EXPECTED[method].items():
        assert result[key] == pytest.approx(expected, abs=1e-3), key


def fake_split(root: Path) -> Path:
    """A two-image ``val`` split of 8x8 images in the BSDS500 layout."""
    from skimage import io

    (root / "val").mkdir(parents=True)
    (root / "val_ids.txt").write_text("1001\n1002\n")
    for image_id in ("1001", "1002"):
        image = np.zeros((8, 8, 3), np.uint8)
        image[:, 4:] = 255
        io.imsave(root / "val" / f"{image_id}.jpg", image, check_contrast=False)
        gt = np.ones((2, 8, 8), np.uint16)
        gt[:, :, 4:] = 2
        np.savez_compressed(root / "val" / f"{image_id}_gt.npz", seg=gt)
    return root


def test_runner_scores_resumes_and_logs(tmp_path: Path) -> None:
    import bsds

    data = fake_split(tmp_path / "data")
    out, docs = tmp_path / "out", tmp_path / "docs" / "benchmarks.md"
    assert bsds.read_ids(data, "val", "1") == ["1001"]
    assert bsds.read_ids(data, "val", "1002,1001") == ["1002", "1001"]
    with pytest.raises(ValueError, match="not in the val split"):
        bsds.read_ids(data, "val", "1003,1001")
    # a list longer than any file name the file system allows is still a list of ids
    assert bsds.read_ids(data, "val", ",".join(["1001", "1002"] * 200)) == ["1001", "1002"] * 200
    argv = ["--method", "graph", "--scale", "100", "--data", str(data), "--out", str(out)]
    assert bsds.main([*argv, "--docs", str(docs)]) == 0
    assert sorted(p.name for p in out.glob("*.tif")) == ["1001.tif", "1002.tif"]

    def broken(image: np.ndarray) -> np.ndarray:
        raise RuntimeError("not called for an image that is done")

    stats, times, failures = bsds.run(broken, data, "val", ["1001", "1002"], out, log=str)
    assert len(stats) == 2 and not failures  # read back from the TIFFs
    assert set(times) == {"1001", "1002"}
    stats, _, failures = bsds.run(broken, data, "val", ["1001"], tmp_path / "new", log=str)
    assert not stats and list(failures) == ["1001"]
    docs.write_text(docs.read_text() + "\nText after the table.\n")
    assert bsds.main([*argv, "--docs", str(docs)]) == 0
    lines = docs.read_text().splitlines()
    rows = [i for i, line in enumerate(lines) if line.startswith("| graph-based")]
    assert len(rows) == 2 and rows[1] == rows[0] + 1  # appended under the table
    assert lines[-1] == "Text after the table."


def test_runner_records_the_iterations_of_self_training_methods(tmp_path: Path) -> None:
    import json

    import bsds

    data = fake_split(tmp_path / "data")
    small = ["max_classes=4", "n_superpixels=8", "device=cpu", "max_iter=3"]
    # 8x8 pixels hold at most 64 labels: with 65 filters a rule of 64 stops after one update
    stopping = ("max_classes=65", "min_classes=64")
    for method, rule, expected in (("paper", ("min_classes=0",), 3), ("demo", stopping, 1)):
        out = tmp_path / method
        params = [arg for setting in (*small, *rule) for arg in ("--param", setting)]
        argv = ["--method", method, *params, "--data", str(data), "--out", str(out), "--no-docs"]
        assert bsds.main(argv) == 0
        assert json.loads((out / "iterations.json").read_text()) == dict.fromkeys(
            ("1001", "1002"), expected
        )
    graph = tmp_path / "graph"
    assert (
        bsds.main(["--method", "graph", "--data", str(data), "--out", str(graph), "--no-docs"]) == 0
    )
    assert (graph / "times.json").exists() and not (graph / "iterations.json").exists()


def test_engine_prediction_folder_changes_with_the_preset(monkeypatch):
    import bsds
    from napari_unsupervised_segmentation.core import params

    args = bsds.build_parser().parse_args(["--method", "ours", "--param", "max_iter=5"])
    before = bsds._tag(args, "preset=default max_iter=5")
    changed = params.PRESETS["default"].replace(max_classes=8)
    monkeypatch.setitem(params.PRESETS, "default", changed)
    after = bsds._tag(args, "preset=default max_iter=5")
    assert before != after and before.startswith("ours_preset=default_max_iter=5_")


def test_merge_sweep_scores_every_setting_from_one_training(tmp_path, capsys, monkeypatch):
    import merge_sweep

    data, cache = fake_split(tmp_path / "data"), tmp_path / "cache"
    argv = ["--data", str(data), "--ids", "1", "--jobs", "1", "--cache", str(cache)]
    argv += ["--iterations", "1,2", "--thresholds", "0,2", "--min-sizes", "16"]
    argv += ["--spectral-weights", "0.2", "--premerge-thresholds", "0,0.1"]
    assert merge_sweep.main(argv) == 0
    printed = capsys.readouterr().out.splitlines()[2:]
    rows = [line.split() for line in printed]
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        (iterations, threshold, "16", "0.2", premerge)
        for iterations in ("1", "2")
        for threshold in ("0", "2")
        for premerge in ("0", "0.1")
    ]
    assert all(r[-1] in {"0", "1", "2", "3", "4"} for r in rows)
    cached = list(cache.iterdir())
    assert len(cached) == 1 and cached[0].name.startswith("1001-")
    for swept in ("merge_threshold=3", "premerge_threshold=0.1"):
        with pytest.raises(SystemExit, match=swept.split("=")[0]):
            merge_sweep.main([*argv, "--param", swept])

    import napari_unsupervised_segmentation

    def no_training(*args, **kwargs):
        raise AssertionError("the cached labels should have been used")

    monkeypatch.setattr(napari_unsupervised_segmentation, "iter_segment", no_training)
    assert merge_sweep.main(argv) == 0
    assert capsys.readouterr().out.splitlines()[2:] == printed  # same scores, from the cache
    # Post-processing given by --param is not training: the cache still serves it.
    assert merge_sweep.main([*argv, "--param", "cut_scale=300.0", "--param", "merge=colour"]) == 0
    assert merge_sweep.main([*argv, "--param", "max_segments=2"]) == 0  # a cap: no training
    assert merge_sweep.main([*argv, "--param", "merge_region_weight=0.4"]) == 0
    capsys.readouterr()
    with pytest.raises(AssertionError, match="cached labels"):  # other settings: not cached
        merge_sweep.main([*argv, "--param", "max_classes=8"])
    assert merge_sweep.main([*argv, "--bound"]) == 0
    assert "per-image choice of these settings" in capsys.readouterr().out


def test_merge_sweep_post_processes_exactly_like_the_engine(tmp_path):
    """A swept setting gives the labels a run of the engine with that setting gives."""
    import merge_sweep
    from napari_unsupervised_segmentation import segment
    from napari_unsupervised_segmentation.core.normalize import prepare_image
    from napari_unsupervised_segmentation.core.postprocess import LabelFinisher

    data, image = sweep_image(tmp_path)
    argv = ["--data", str(data), "--ids", "1", "--iterations", "3", "--cache", str(tmp_path)]
    args = merge_sweep.build_parser().parse_args(
        [*argv, "--param", "device=cpu", "--param", "min_classes=0"]
    )
    raw = merge_sweep.cached_labels(args, "1001")["it3"]
    base = merge_sweep.training_settings(args)
    finish = LabelFinisher(base, prepare_image(image, -1))
    swept = ((0.1, 0, 0.0, 0.0), (0.3, 0, 0.0, 0.0), (0.3, 0, 0.1, 0.0), (0.4, 0, 0.2, 0.5))
    for threshold, cap, premerge, region_weight in (*swept, (0.1, 3, 0.0, 0.0)):
        setting = base.replace(
            max_iter=3,
            merge_threshold=threshold,
            min_segment_size=16,
            max_segments=cap,
            spectral_weight=0.2 if premerge else 0.0,
            premerge_threshold=premerge or None,
            merge_region_weight=region_weight,
        )
        engine = segment(image, setting, channel_axis=-1)
        assert np.array_equal(finish(raw, setting), engine)
        assert cap or engine.max() > 3  # so that the cap of 3 below has work to do
    assert engine.max() <= 3


def test_merge_sweep_stops_where_a_full_run_stops(tmp_path, monkeypatch):
    """Where the stopping rule ends the engine's run early, the sweep uses that iteration."""
    import merge_sweep
    from napari_unsupervised_segmentation import segment

    data, image = sweep_image(tmp_path)
    argv = ["--data", str(data), "--ids", "1", "--iterations", "2,4", "--cache", str(tmp_path)]
    # At its initialisation 97 of 100 filters win somewhere on this image: the rule "99 labels
    # or fewer" stops after the first iteration.
    params = ["--param", "device=cpu", "--param", "max_classes=100", "--param", "min_classes=99"]
    args = merge_sweep.build_parser().parse_args([*argv, *params])
    cached = merge_sweep.cached_labels(args, "1001")
    argmax = merge_sweep.training_settings(args).replace(**merge_sweep.UNTRAINED, max_iter=4)
    engine = segment(image, argmax.replace(min_classes=99), channel_axis=-1)
    assert np.array_equal(cached["it4"], engine)
    assert np.array_equal(cached["it2"], cached["it4"])
    (path,) = tmp_path.glob("1001-*.npz")
    with np.load(path) as npz:
        assert int(npz["stopped_at"]) == 1
    assert not np.array_equal(cached["it4"], segment(image, argmax, channel_axis=-1))  # rule off

    def no_training(*args, **kwargs):
        raise AssertionError("the cache should serve every count up to and past the stop")

    monkeypatch.setattr("napari_unsupervised_segmentation.iter_segment", no_training)
    other_counts = ["--data", str(data), "--ids", "1", "--iterations", "1,3", "--cache"]
    again = merge_sweep.build_parser().parse_args([*other_counts, str(tmp_path), *params])
    reloaded = merge_sweep.cached_labels(again, "1001")
    assert np.array_equal(reloaded["it3"], cached["it4"])
    assert np.array_equal(reloaded["it1"], cached["it4"])


def sweep_image(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A fake split with one noisy 40x40 image of three regions and a 3-pixel stripe."""
    from skimage import io

    import bsds

    data = fake_split(tmp_path / "data")
    rng = np.random.default_rng(0)
    image = np.zeros((40, 40, 3), np.uint8)
    image[:, 20:] = (200, 60, 30)
    image[10:30, 5:15] = (30, 90, 220)
    image[:, 17:20] = (20, 200, 40)  # a 3-pixel stripe: a rim that the clean-up removes last
    image = np.clip(image + rng.normal(0, 25, image.shape), 0, 255).astype(np.uint8)
    io.imsave(data / "val" / "1001.jpg", image, check_contrast=False)
    return data, bsds.load_image(data, "val", "1001")  # as the sweep reads it (JPEG)


def image_row(miou: float, sc: float, vi: float) -> scores.ImageStats:
    """Per-image statistics of one ground-truth segment, with PRI on target."""
    return scores.ImageStats(
        iou_all=miou, n_all=1, iou_fine=miou, n_fine=1, iou_coarse=miou, n_coarse=1,
        covering=sc, covering_area=1, pri=0.9, vi=vi, ap50=0.0, ap70=0.0, n_segments=2,
    )  # fmt: skip


def test_per_image_bound_picks_the_finer_setting_only_where_vi_allows():
    import merge_sweep

    per_image = [
        {"fine": image_row(0.9, 0.6, 3.5), "coarse": image_row(0.1, 0.6, 1.0)},
        {"fine": image_row(0.9, 0.6, 1.0), "coarse": image_row(0.1, 0.6, 1.0)},
    ]
    at_most, found, chosen = merge_sweep.per_image_bound(per_image)
    # fine everywhere has mIoU 0.9 but VI 2.25; only fine on the second image keeps VI <= 2
    assert chosen == ["coarse", "fine"]
    assert found["miou_all"] == pytest.approx(0.5) and found["vi"] == pytest.approx(1.0)
    # the relaxation may take the first image 80 % fine: VI (0.8 x 3.5 + 0.2 + 1) / 2 = 2
    assert at_most == pytest.approx((0.8 * 0.9 + 0.2 * 0.1 + 0.9) / 2)

    every_vi_too_high = [{"one": image_row(0.9, 0.6, 2.5)}]
    assert merge_sweep.per_image_bound(every_vi_too_high) == (None, None, None)


def test_per_image_bound_brackets_the_exhaustive_optimum():
    import itertools

    import merge_sweep

    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(30):
        per_image = [
            {
                k: image_row(rng.uniform(0, 1), rng.uniform(0.4, 0.7), rng.uniform(1, 3))
                for k in "abc"
            }
            for _ in range(4)
        ]
        best = None
        for choice in itertools.product("abc", repeat=4):
            row = scores.combine([image[k] for image, k in zip(per_image, choice, strict=True)])
            if row["sc"] >= 0.52 and row["vi"] <= 2.0:  # PRI is 0.9 throughout
                best = max(best or 0.0, row["miou_all"])
        at_most, found, _ = merge_sweep.per_image_bound(per_image)
        if best is None:
            assert found is None
            continue
        checked += 1
        assert found["sc"] >= 0.52 and found["vi"] <= 2.0
        assert found["miou_all"] <= best + 1e-12 <= at_most + 2e-12
    assert checked >= 10


def test_runner_segments_images_in_parallel_as_one_at_a_time(tmp_path: Path, capsys) -> None:
    import os

    import bsds

    data = fake_split(tmp_path / "data")
    workers = tmp_path / "workers.txt"

    def graph(image: np.ndarray) -> np.ndarray:
        with workers.open("a") as log:
            log.write(f"{os.getpid()}\n")
        return baselines.graph_based(image, 100, 0.5, 20)

    one, times_one, _ = bsds.run(graph, data, "val", ["1001", "1002"], tmp_path / "1", log=str)
    assert workers.read_text().split() == [str(os.getpid())] * 2
    workers.unlink()
    ids = ["1001", "1002", "1001"]  # an id listed twice counts once
    two, times_two, failures = bsds.run(graph, data, "val", ids, tmp_path / "2", log=str, jobs=2)
    assert str(os.getpid()) not in workers.read_text().split()  # segmented in the workers
    assert not failures and set(times_two) == {"1001", "1002"}
    assert scores.combine(two) == scores.combine(one)
    for image_id in ("1001", "1002"):
        written = (tmp_path / "2" / f"{image_id}.tif").read_bytes()
        assert written == (tmp_path / "1" / f"{image_id}.tif").read_bytes()

    def broken(image: np.ndarray) -> np.ndarray:
        raise RuntimeError("no labels")

    again, times_again, failures = bsds.run(broken, data, "val", ids, tmp_path / "2", jobs=2)
    assert not failures and times_again == times_two  # resumed: nothing segmented again
    assert scores.combine(again) == scores.combine(two)

    messages: list[str] = []
    stats, _, failures = bsds.run(
        broken, data, "val", ["1001", "1002"], tmp_path / "3", log=messages.append, jobs=2
    )
    assert not stats and failures == dict.fromkeys(("1001", "1002"), "RuntimeError: no labels")
    assert sum("FAILED" in m and "Traceback" in m for m in messages) == 2

    def dies(image: np.ndarray) -> np.ndarray:
        os._exit(1)  # as a worker killed for memory would

    stats, _, failures = bsds.run(dies, data, "val", ["1001", "1002"], tmp_path / "4", jobs=2)
    assert not stats and set(failures) == {"1001", "1002"}
    assert all("worker process died" in message for message in failures.values())

    argv = ["--method", "graph", "--scale", "100", "--data", str(data), "--no-docs"]
    assert bsds.main([*argv, "--out", str(tmp_path / "5"), "--jobs", "2"]) == 0
    row = capsys.readouterr().out.splitlines()[-1]
    assert "| `scale=100 sigma=0.5 min_size=20 jobs=2` |" in row
    assert bsds.main([*argv, "--out", str(tmp_path / "5"), "--jobs", "2"]) == 0  # all resumed
    row = capsys.readouterr().out.splitlines()[-1]
    assert "| `scale=100 sigma=0.5 min_size=20` |" in row


def test_compare_scores_the_images_every_folder_has(tmp_path: Path, capsys) -> None:
    import bsds
    import compare

    data = fake_split(tmp_path / "data")
    graph, blank = tmp_path / "graph", tmp_path / "blank"
    common = ["--data", str(data), "--no-docs"]
    assert bsds.main(["--method", "graph", "--scale", "100", "--out", str(graph), *common]) == 0
    assert bsds.main(["--method", "blank", "--out", str(blank), *common]) == 0
    (blank / "1002.tif").unlink()  # a run that stopped part-way
    assert bsds.main(["--method", "graph", "--out", str(graph), "--ids", "1001", *common]) == 0
    graph_row_on_1001 = capsys.readouterr().out.splitlines()[-1]

    assert compare.main([str(graph), str(blank), "--data", str(data), "--resamples", "50"]) == 0
    captured = capsys.readouterr()
    assert "1 of 2 val images in every folder" in captured.err
    lines = captured.out.splitlines()
    row_cells = graph_row_on_1001.split(" | ")
    # the same scores, seconds and image count as bsds.py's row on that image alone
    assert lines[2].rstrip(" |").split(" | ")[3:] == row_cells[3:14]
    difference = lines[-1]
    assert difference.startswith(f"| {blank.name} |")
    miou_cell = difference.split(" | ")[1]
    assert miou_cell.startswith("-")  # one label scores below the two right halves
    assert difference.endswith("| 0 of 1 |")  # blank never has more segments

    assert compare.main([str(graph), str(graph), "--data", str(data), "--resamples", "20"]) == 0
    same = capsys.readouterr().out.splitlines()[-1]
    assert same.count("+0.0000 (+0.0000 to +0.0000)") == len(compare.COMPARED)

    assert compare.main([str(graph), str(tmp_path / "empty"), "--data", str(data)]) == 1
    assert "no prediction of these images in: " + str(tmp_path / "empty") in capsys.readouterr().err

    # an id listed twice counts once; iterations are reported where a run recorded them
    (graph / "iterations.json").write_text('{"1001": 7, "1002": 500}')
    argv = [str(graph), str(graph), "--data", str(data), "--ids", "1002,1001,1002"]
    assert compare.main([*argv, "--resamples", "5"]) == 0
    captured = capsys.readouterr()
    assert "2 of 2 val images in every folder" in captured.err
    assert f"{graph.name}: iterations median 253.5, 7 to 500 (2 images)" in captured.out
    assert captured.out.splitlines()[-1].endswith("| 0 of 2 |")

    # the estimate: the other folder's score minus the reference's subset-to-whole offset
    assert compare.offset_estimate(
        dict.fromkeys(compare.COMPARED, 0.5), dict.fromkeys(compare.COMPARED, 0.4),
        dict.fromkeys(compare.COMPARED, 0.3),
    ) == pytest.approx(dict.fromkeys(compare.COMPARED, 0.4))  # fmt: skip
    argv = [str(graph), str(blank), "--data", str(data), "--resamples", "5", "--estimate"]
    assert compare.main(argv) == 0
    estimate = capsys.readouterr().out.splitlines()
    assert estimate[-2].startswith(f"| {graph.name}: all 2 images |")
    assert estimate[-1].startswith(f"| {blank.name} |")
    assert "estimate from 1 images" in estimate[-4]

    # a prediction that cannot be read is named and left out of every row
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("1001.tif", "1002.tif"):
        (copy / name).write_bytes((graph / name).read_bytes())
    (copy / "1002.tif").write_bytes(b"not a TIFF")
    assert compare.main([str(graph), str(copy), "--data", str(data), "--resamples", "5"]) == 2
    captured = capsys.readouterr()
    assert f"{copy}: 1002: FAILED" in captured.err
    assert all(line.endswith("| 1 |") for line in captured.out.splitlines()[2:4])


def test_paired_bootstrap_brackets_a_difference_seen_on_every_image() -> None:
    import compare

    rng = np.random.default_rng(1)
    first, second = [], []
    for _ in range(12):
        stats = scores.ImageStats(
            iou_all=rng.uniform(2, 5), n_all=10, iou_fine=1.0, n_fine=5, iou_coarse=1.0,
            n_coarse=2, covering=rng.uniform(300, 600), covering_area=1000, pri=0.7, vi=2.0,
            ap50=0.1, ap70=0.05, n_segments=20,
        )  # fmt: skip
        first.append(stats)
        second.append(
            scores.ImageStats(**{**stats.as_dict(), "iou_all": stats.iou_all + 1, "vi": 1.5})
        )
    intervals = compare.paired_bootstrap(first, second, resamples=200)
    # +1 IoU over 10 segments on every image: +0.1 in every resample, but only if both
    # folders are pooled over the same draw (unpaired draws would spread it)
    assert intervals["miou_all"] == pytest.approx((0.1, 0.1))
    assert intervals["sc"] == pytest.approx((0.0, 0.0))
    assert intervals["vi"] == pytest.approx((-0.5, -0.5))
    with pytest.raises(ValueError, match="same, non-zero number"):
        compare.paired_bootstrap(first, second[:-1])


def test_table_row_puts_each_score_under_its_column() -> None:
    import bsds

    result = {"median_segments": 12.5, "n_images": 3}
    result.update({key: n / 100 for n, key in enumerate(bsds.SCORE_KEYS.values(), 1)})
    row = bsds.format_row("m", "a=1", "val", result, 2.0, extra=("abc", "cpu", "today"))
    header = bsds.TABLE_HEADER.strip("| ").split(" | ")
    cells = dict(zip(header, row.strip("| ").split(" | "), strict=True))
    # each score distinct, so that two swapped columns show
    assert [cells[column] for column in bsds.SCORE_KEYS] == [
        f"{result[key]:.4f}" for key in ("miou_all", "miou_fine", "miou_coarse", "sc", "pri")
    ] + [f"{result[key]:.4f}" for key in ("vi", "ap50", "ap70")]
    assert cells["median segments"] == "12.5"
    assert (cells["settings"], cells["n images"], cells["date"]) == ("`a=1`", "3", "today")
