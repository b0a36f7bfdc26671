"""Sweep the default preset's post-processing on BSDS500 without retraining for each setting.

The network is trained once per image (the ``default`` preset with one label per class,
``label_by="class"``) and its raw labels are cached at a few iteration counts, or at the iteration
where the demo's stopping rule ends a run earlier; every combination of iteration count,
``merge_threshold``, ``min_segment_size``, ``spectral_weight`` and ``premerge_threshold`` is
then post-processed
exactly as the engine does (one ``LabelFinisher`` per image) and scored, so a swept setting
gives the labels of a ``bsds.py --method ours`` run of that setting with the same
``--jobs``. This is how the default's post-processing was chosen (see docs/benchmarks.md).
``--bound`` adds how much mIoU a per-image choice among the swept settings could reach with
the other bars of ``TARGETS`` met (it looks at the annotations: a limit for any adaptive
rule, not a method).

Example
-------
::

    python benchmarks/merge_sweep.py --split val --iterations 40,80 --thresholds 0.25,0.3,0.35
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
from collections import Counter
from collections.abc import Sequence
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np

import bsds
import scores

#: The four bars the default's settings are chosen to meet together (docs/benchmarks.md).
TARGETS = {"miou_all": 0.33, "sc": 0.52, "pri": 0.78, "vi": 2.0}


def targets_met(row: dict[str, float]) -> int:
    """How many of the four bars of :data:`TARGETS` a row of scores meets (VI: lower is better)."""
    return sum(
        row[name] <= bound if name == "vi" else row[name] >= bound
        for name, bound in TARGETS.items()
    )


def per_image_bound(
    per_image: Sequence[dict[tuple, scores.ImageStats]],
) -> tuple[float | None, dict[str, float] | None, list[tuple] | None]:
    """The most mIoU all a per-image choice of settings can reach with the other bars met.

    A diagnostic, not a method: the choice looks at the annotations. If even the best choice
    misses the mIoU bar, no rule that picks one of the swept settings per image (an
    adaptive threshold, say) can meet all four.

    Returns
    -------
    at_most : float or None
        A proven upper bound: the optimum of the linear relaxation (each image may mix its
        settings with weights summing to 1), which no discrete choice can beat; None when
        even the relaxation cannot meet SC, PRI and VI together (so no choice can).
    found, chosen : dict or None, list or None
        The pooled scores and per-image settings of the best choice found that meets SC, PRI
        and VI (the relaxation rounded, a grid of weighted sums, then single images switched
        while the bars hold), or None when the search found none.
    """
    shares = _pooled_shares(per_image)
    at_most, relaxed = _relaxation(*shares)
    if at_most is None:
        return None, None, None
    best = _best_choice(*shares, start=np.argmax(relaxed, axis=1))
    if best is None:
        return at_most, None, None
    keys = list(per_image[0])
    chosen = [keys[k] for k in best]
    found = scores.combine([image[key] for image, key in zip(per_image, chosen, strict=True)])
    return at_most, found, chosen


def _pooled_shares(per_image: Sequence[dict[tuple, scores.ImageStats]]) -> list[np.ndarray]:
    """Each (image, setting)'s share of the pooled mIoU all, SC, PRI and VI.

    The denominators depend on the annotations only, so every pooled score of a choice is
    the sum of the chosen shares, exactly as :func:`scores.combine` pools them.
    """
    keys = list(per_image[0])
    n_images = len(per_image)
    n_annotated = sum(image[keys[0]].n_all for image in per_image)
    area = sum(image[keys[0]].covering_area for image in per_image)

    def table(value: Any) -> np.ndarray:
        return np.array([[value(image[key]) for key in keys] for image in per_image])

    return [
        table(lambda s: s.iou_all / n_annotated),
        table(lambda s: s.covering / area),
        table(lambda s: s.pri / n_images),
        table(lambda s: s.vi / n_images),
    ]


def _meets_targets(sc: float, pri: float, vi: float) -> bool:
    slack = 1e-9  # so that the pooled scores, summed in another order, still meet them
    return (
        sc >= TARGETS["sc"] + slack
        and pri >= TARGETS["pri"] + slack
        and vi <= TARGETS["vi"] - slack
    )


def _relaxation(
    miou: np.ndarray, sc: np.ndarray, pri: np.ndarray, vi: np.ndarray
) -> tuple[float | None, np.ndarray | None]:
    """Optimum and weights of the linear relaxation of the per-image choice."""
    from scipy.optimize import linprog

    n_images, n_keys = miou.shape
    one_per_image = np.kron(np.eye(n_images), np.ones(n_keys))
    result = linprog(
        -miou.ravel(),
        A_ub=np.stack([-sc.ravel(), -pri.ravel(), vi.ravel()]),
        b_ub=[-TARGETS["sc"], -TARGETS["pri"], TARGETS["vi"]],
        A_eq=one_per_image,
        b_eq=np.ones(n_images),
        bounds=(0, 1),
        method="highs",
    )
    if result.status == 2:  # infeasible
        return None, None
    if result.status != 0:
        raise RuntimeError(f"linear relaxation failed: {result.message}")
    return float(-result.fun), result.x.reshape(n_images, n_keys)


def _best_choice(
    miou: np.ndarray, sc: np.ndarray, pri: np.ndarray, vi: np.ndarray, start: np.ndarray
) -> np.ndarray | None:
    """The best choice (a setting index per image) found that meets SC, PRI and VI."""
    rows = np.arange(len(miou))
    starts = [start]

    def feasible(choice: np.ndarray) -> bool:
        return _meets_targets(
            sc[rows, choice].sum(), pri[rows, choice].sum(), vi[rows, choice].sum()
        )

    weights = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
    for w_sc, w_pri, w_vi in itertools.product(weights, weights, weights):
        starts.append(np.argmax(miou + w_sc * sc + w_pri * pri - w_vi / 10 * vi, axis=1))
    candidates = [choice for choice in starts if feasible(choice)]
    if not candidates:
        return None
    best = max(candidates, key=lambda choice: miou[rows, choice].sum())
    improved = True
    while improved:  # switch single images to a setting of more mIoU while the targets hold
        improved = False
        for image, key in itertools.product(rows, range(miou.shape[1])):
            if miou[image, key] > miou[image, best[image]]:
                trial = best.copy()
                trial[image] = key
                if feasible(trial):
                    best, improved = trial, True
    return best


POST_PROCESSING = ("merge_threshold", "min_segment_size", "spectral_weight", "premerge_threshold")
#: The training the cache holds: every argmax value one label. Post-processing that --param
#: sets (not swept) leaves the cached training alone.
UNTRAINED = {"label_by": "class"}


def training_settings(args: argparse.Namespace) -> Any:
    """The ``default`` preset with ``--param`` and the stopping rule off.

    The stopping rule is applied to the cached steps instead (:func:`cached_labels`); the
    swept settings replace the post-processing's (:func:`swept_settings`).
    """
    from napari_unsupervised_segmentation import PRESETS

    return PRESETS["default"].replace(**{**dict(args.param), "min_classes": 0})


def swept_settings(
    base: Any, threshold: float, min_size: int, spectral: float, premerge: float
) -> Any:
    """``base`` with one combination of the swept settings, as a run given them would have
    them: a threshold of 0 (and no ``max_segments``) merges nothing, and the spectral weight
    and premerge threshold belong to the texture merge (the premerge to a spectral weight)."""
    merges = base.merge not in (None, "off") and (threshold or base.max_segments)
    changes: dict[str, Any] = {"min_segment_size": min_size}
    if not merges:
        return base.replace(**changes, merge="off" if base.merge else None)
    changes["merge_threshold"] = threshold
    if base.merge == "texture":
        changes["spectral_weight"] = spectral
        changes["premerge_threshold"] = premerge if spectral else None
    return base.replace(**changes)


def stopping_rule(args: argparse.Namespace) -> int:
    """The ``min_classes`` a full run applies: the default preset's, or ``--param``'s."""
    from napari_unsupervised_segmentation import PRESETS

    return PRESETS["default"].replace(**dict(args.param)).min_classes


def cached_labels(args: argparse.Namespace, image_id: str) -> dict[str, np.ndarray]:
    """Raw (not post-processed) labels after each iteration count, trained once and cached.

    The cache file is named by a digest of the training settings, so a changed preset or
    ``--param`` never reuses labels trained otherwise. The training runs with every
    post-processing setting off, so that its steps' labels are the argmax itself and each
    sweep setting is applied once, exactly as the engine applies it. Where the demo's
    stopping rule (``min_classes``) ends the training earlier, the labels of that iteration
    stand for every later count, as a full run would have them. A cache is only valid for a
    deterministic training (a fixed seed, the same device and thread count).
    """
    from napari_unsupervised_segmentation import iter_segment

    trained = training_settings(args).replace(**UNTRAINED)
    stop_at = stopping_rule(args)
    # "argmax": the cache holds the raw argmax labels; the tag keeps caches of other content apart.
    key = repr(trained.replace(max_iter=1)) + " argmax"
    if stop_at:
        key += f", stopped at <= {stop_at} labels"
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    path = args.cache / f"{image_id}-{digest}.npz"
    raw: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path) as cached:
            raw = {key: cached[key] for key in cached.files}
    if not all(_source(raw, n) in raw for n in args.iterations):
        image = bsds.load_image(args.data, args.split, image_id)
        steps = iter_segment(image, trained.replace(max_iter=max(args.iterations)), channel_axis=-1)
        for step in steps:
            if step.iteration in args.iterations:
                raw[f"it{step.iteration}"] = step.labels
            if stop_at and step.n_classes <= stop_at:
                raw[f"it{step.iteration}"] = step.labels
                raw["stopped_at"] = np.array(step.iteration)
                break
        np.savez_compressed(path, **raw)  # keeps the iteration counts already in the cache
    return {f"it{n}": raw[_source(raw, n)] for n in args.iterations}


def _source(raw: dict[str, np.ndarray], iterations: int) -> str:
    """The cached labels a run of ``iterations`` ends with (the stopping rule's, if earlier)."""
    stopped = int(raw.get("stopped_at", 0))
    return f"it{min(iterations, stopped) if stopped else iterations}"


def score_image(job: tuple[argparse.Namespace, str]) -> dict[tuple, scores.ImageStats]:
    """Scores of one image under every post-processing setting of the sweep."""
    from napari_unsupervised_segmentation.core.normalize import prepare_image
    from napari_unsupervised_segmentation.core.postprocess import LabelFinisher

    args, image_id = job
    raw = cached_labels(args, image_id)
    prepared = prepare_image(bsds.load_image(args.data, args.split, image_id), -1)
    annotations = bsds.load_annotations(args.data, args.split, image_id)
    base = training_settings(args)
    finish = LabelFinisher(base, prepared)  # makes the image-level maps once for all settings
    results = {}
    for key in itertools.product(
        args.iterations, args.thresholds, args.min_sizes, args.spectral_weights, args.premerge
    ):
        iterations, threshold, min_size, spectral, premerge = key
        settings = swept_settings(base, threshold, min_size, spectral, premerge)
        labels = finish(raw[f"it{iterations}"], settings)
        results[key] = scores.image_stats(labels, annotations)
    return results


def numbers(text: str, kind: type) -> list:
    return [kind(token) for token in text.split(",") if token]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("val", "train"), default="val")
    parser.add_argument("--ids", help="N (the first N), ids separated by commas, or a file")
    parser.add_argument("--data", type=Path, default=bsds.DEFAULT_DATA)
    parser.add_argument("--iterations", type=lambda t: numbers(t, int), default=[40, 80])
    parser.add_argument(
        "--thresholds",
        type=lambda t: numbers(t, float),
        default=[0.25, 0.3, 0.35],
        help="merge thresholds (the default preset: 0.435 with its region weight; the texture "
        "boundary alone: around 0.3; add --param merge=colour for the colour merge, around 2)",
    )
    parser.add_argument("--min-sizes", type=lambda t: numbers(t, int), default=[16])
    parser.add_argument(
        "--spectral-weights",
        type=lambda t: numbers(t, float),
        default=[0.0],
        help="spectral_weight values (the default preset: 0.2, threshold 0.435, premerge 0.4)",
    )
    parser.add_argument(
        "--premerge-thresholds",
        dest="premerge",
        type=lambda t: numbers(t, float),
        default=[0.0],
        help="premerge_threshold values (0: one merge; with a spectral weight, a first merge "
        "to this threshold before the cue is computed again)",
    )
    parser.add_argument(
        "--cache", type=Path, help="folder of cached raw labels (default benchmarks/results/...)"
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--bound",
        action="store_true",
        help="also print how much mIoU a per-image choice of the swept settings can reach with "
        "SC, PRI and VI at their bars (looks at the annotations: a limit, not a method)",
    )
    parser.add_argument(
        "--param", action="append", type=bsds.parse_param, default=[], metavar="KEY=VALUE"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    swept = sorted({key for key, _ in args.param} & set(POST_PROCESSING))
    if swept:
        raise SystemExit(
            f"--param {', '.join(swept)}: swept by --thresholds / --min-sizes / "
            "--spectral-weights / --premerge-thresholds"
        )
    try:
        training_settings(args)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"--param: {exc}") from exc
    ids = bsds.read_ids(args.data, args.split, args.ids)
    if args.cache is None:
        args.cache = bsds.REPO_ROOT / "benchmarks" / "results" / args.split / "sweep-cache"
    args.cache.mkdir(parents=True, exist_ok=True)
    jobs = [(args, image_id) for image_id in ids]
    if args.jobs > 1:
        # Each worker its share of the threads, as bsds.py --jobs does: the training (and so the
        # cached labels) then matches a bsds.py run with the same --jobs.
        threads = max(1, bsds._usable_cpus() // args.jobs)
        with Pool(args.jobs, initializer=bsds._limit_threads, initargs=(threads,)) as pool:
            per_image = pool.map(score_image, jobs, chunksize=1)
    else:
        per_image = [score_image(job) for job in jobs]
    print(f"{len(ids)} {args.split} images; targets: {TARGETS}")
    print(
        "iterations threshold min_size spectral premerge | mIoU all    SC   PRI    VI | "
        "segments met"
    )
    for key in per_image[0]:
        row = scores.combine([image[key] for image in per_image])
        print(
            f"{key[0]:10d} {key[1]:9g} {key[2]:8d} {key[3]:8g} {key[4]:8g} | {row['miou_all']:.4f} "
            f"{row['sc']:.4f} "
            f"{row['pri']:.4f} {row['vi']:.4f} | {row['median_segments']:8g} {targets_met(row)}"
        )
    if args.bound:
        at_most, found, chosen = per_image_bound(per_image)
        if at_most is None:
            print("no per-image choice of these settings meets SC, PRI and VI together")
        else:
            print(
                f"per-image choice of these settings (looks at the annotations): mIoU all "
                f"<= {at_most:.4f} with SC, PRI and VI on target"
            )
        if found is not None:
            used = ", ".join(f"{key} x{n}" for key, n in Counter(chosen).most_common(5))
            print(
                f"  best choice found | {found['miou_all']:.4f} {found['sc']:.4f} "
                f"{found['pri']:.4f} {found['vi']:.4f} | {found['median_segments']:8g} "
                f"{targets_met(found)} | most used (iterations, threshold, size, spectral, "
                f"premerge): {used}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
