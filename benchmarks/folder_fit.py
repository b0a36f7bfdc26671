"""One model for a folder of photos: fit once on crops across the BSDS500 val photos, predict
each, against ``segment`` on each photo.

Run from the repository root::

    python benchmarks/folder_fit.py                         # 100 val photos, preset paper
    python benchmarks/folder_fit.py --ids 10 --baseline 1 --param max_iter=20

The model is fitted once on crops sampled across all the photos (``fit`` on the list),
then labels each photo (``predict``); its classes are the labels, which the scorer splits
into 4-connected segments, as it does for ``segment``'s labels. ``--finish`` also
post-processes each prediction as ``segment`` does with the preset (the ``paper`` preset
has no post-processing, so it changes nothing there). In the same run ``segment`` runs on
the first ``--baseline`` photos of the list with the same settings: the time ratio is the
fit-once run's seconds over the mean ``segment`` seconds times the number of photos.
With the ``paper`` preset and no ``--param``, the scores and seconds committed in
``benchmarks/scores/val/paper_preset=paper_device=cpu/`` for the same photos are printed
too. Predictions go to the ignored ``benchmarks/results/val/folder_fit_<preset>/``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

# this checkout's package before any installed copy
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import bsds  # noqa: E402
import scores  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
ORDER = REPO_ROOT / "benchmarks" / "val_ids_order.txt"
COMMITTED = REPO_ROOT / "benchmarks" / "scores" / "val" / "paper_preset=paper_device=cpu"
SHOWN = {"miou_all": "mIoU all", "sc": "SC", "pri": "PRI", "vi": "VI"}


def committed(ids: Sequence[str]) -> tuple[list[scores.ImageStats], list[float]]:
    """The committed per-image statistics and seconds of the ``paper`` preset for ``ids``."""
    lines = (COMMITTED / "scores.csv").read_text().splitlines()
    header = lines[0].split(",")
    types = {f.name: f.type for f in scores.ImageStats.__dataclass_fields__.values()}
    rows = {}
    for line in lines[1:]:
        values = dict(zip(header, line.split(","), strict=True))
        image_id = values.pop("id")
        rows[image_id] = scores.ImageStats(
            **{k: (int(v) if types[k] in (int, "int") else float(v)) for k, v in values.items()}
        )
    times = json.loads((COMMITTED / "times.json").read_text())
    return [rows[i] for i in ids], [float(times[i]) for i in ids]


def row(name: str, stats: Sequence[scores.ImageStats]) -> str:
    pooled = scores.combine(stats)
    figures = " ".join(f"{label} {pooled[key]:.3f}" for key, label in SHOWN.items())
    return (
        f"{name} ({len(stats)} photos): {figures}, median segments {pooled['median_segments']:.0f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=bsds.DEFAULT_DATA)
    parser.add_argument("--ids", default=str(ORDER), help="N (the first N of the order) or a file")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--param", action="append", type=bsds.parse_param, default=[])
    parser.add_argument("--baseline", type=int, default=2, help="photos segment runs on")
    parser.add_argument("--finish", action="store_true", help="post-process as segment does")
    args = parser.parse_args(argv)

    from napari_unsupervised_segmentation import fit, segment
    from napari_unsupervised_segmentation.core.normalize import prepare_image
    from napari_unsupervised_segmentation.core.postprocess import LabelFinisher
    from napari_unsupervised_segmentation.core.train import resolve_params

    order = ORDER.read_text().split()
    ids = (
        order[: int(args.ids)] if args.ids.isdigit() else bsds.read_ids(args.data, "val", args.ids)
    )
    overrides = dict(args.param)
    settings = resolve_params(args.preset, **overrides)
    out = REPO_ROOT / "benchmarks" / "results" / "val" / f"folder_fit_{args.preset}"
    out.mkdir(parents=True, exist_ok=True)
    photos = [bsds.load_image(args.data, "val", i) for i in ids]
    annotations = [bsds.load_annotations(args.data, "val", i) for i in ids]
    print(
        f"{len(ids)} val photos, preset {args.preset!r} {overrides or ''}; "
        f"load {os.getloadavg()[0]:.1f}"
    )

    started = time.perf_counter()
    model = fit(photos, settings, channel_axis=-1)
    fitted = time.perf_counter() - started
    predictions = []
    for image_id, photo in zip(ids, photos, strict=True):
        labels = model.predict(photo, channel_axis=-1)
        if args.finish:
            labels = LabelFinisher(settings, prepare_image(photo, -1))(labels)
        predictions.append(labels)
        bsds.write_labels(out / f"{image_id}.tif", labels)
    seconds = time.perf_counter() - started
    print(
        f"fit once: {fitted:.1f} s, then predict{' and finish' if args.finish else ''} "
        f"all: {seconds - fitted:.1f} s; {seconds:.1f} s in all"
    )
    stats = [scores.image_stats(p, a) for p, a in zip(predictions, annotations, strict=True)]
    print(row("fit once", stats))

    n = min(args.baseline, len(ids))
    if n:
        started = time.perf_counter()
        baseline = [
            scores.image_stats(segment(photo, settings, channel_axis=-1), a)
            for photo, a in zip(photos[:n], annotations[:n], strict=True)
        ]
        per_photo = (time.perf_counter() - started) / n
        print(
            f"segment on the first {n}: {per_photo:.1f} s per photo; time ratio "
            f"fit once / segment on all {len(ids)}: {seconds / (per_photo * len(ids)):.3f}"
        )
        print(row("  fit once, same photos", stats[:n]))
        print(row("  segment, same photos", baseline))
    if args.preset == "paper" and not overrides and COMMITTED.is_dir():
        kept, times = committed(ids)
        print(
            f"committed segment (paper preset): {sum(times):.0f} s for these photos; time "
            f"ratio fit once / committed: {seconds / sum(times):.4f}"
        )
        print(row("committed segment", kept))
    print(f"load {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
