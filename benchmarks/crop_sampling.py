"""How crop size, pool and batch change a model fitted on crops across photos (BSDS500 train).

Run from the repository root::

    python benchmarks/crop_sampling.py --ids 8 --param max_iter=60
    python benchmarks/crop_sampling.py --ids 8 --sampling 128,96,8 --sampling 64,96,32

Each ``--sampling SIZE,POOL,BATCH`` fits one model on crops across the same train photos
(``fit`` on the list, the same seed) and labels each photo; it prints the seconds and the
scores of each, paired on the same photos. Development data only: the val split is for the
reported figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

# this checkout's package before any installed copy
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import bsds  # noqa: E402
import scores  # noqa: E402

SHOWN = {"miou_all": "mIoU all", "sc": "SC", "pri": "PRI", "vi": "VI"}
DEFAULT_SAMPLINGS = ("128,256,8", "64,256,32", "192,256,4", "128,96,8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=bsds.DEFAULT_DATA)
    parser.add_argument("--ids", default="8", help="N (the first N train ids) or ids")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--param", action="append", type=bsds.parse_param, default=[])
    parser.add_argument("--sampling", action="append", default=[], help="SIZE,POOL,BATCH")
    args = parser.parse_args(argv)

    from napari_unsupervised_segmentation import CropSampling, fit

    ids = bsds.read_ids(args.data, "train", args.ids)
    photos = [bsds.load_image(args.data, "train", i) for i in ids]
    annotations = [bsds.load_annotations(args.data, "train", i) for i in ids]
    overrides = dict(args.param)
    print(
        f"{len(ids)} train photos, preset {args.preset!r} {overrides or ''}; "
        f"load {os.getloadavg()[0]:.1f}"
    )
    for text in args.sampling or DEFAULT_SAMPLINGS:
        size, pool, batch = (int(v) for v in text.split(","))
        started = time.perf_counter()
        model = fit(
            photos, args.preset, channel_axis=-1, crops=CropSampling(size, pool, batch), **overrides
        )
        predictions = [model.predict(photo, channel_axis=-1) for photo in photos]
        seconds = time.perf_counter() - started
        pooled = scores.combine(
            [scores.image_stats(p, a) for p, a in zip(predictions, annotations, strict=True)]
        )
        figures = " ".join(f"{label} {pooled[key]:.3f}" for key, label in SHOWN.items())
        print(
            f"size {size} pool {pool} batch {batch}: {seconds:.1f} s; {figures}, "
            f"median segments {pooled['median_segments']:.0f}; load {os.getloadavg()[0]:.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
