"""Segment the nuclei of the Data Science Bowl 2018 ``dev`` split, score them, log the row.

Examples
--------
::

    python benchmarks/nuclei.py --method otsu
    python benchmarks/nuclei.py --method watershed
    python benchmarks/nuclei.py --method engine --preset default --ids 5 --param device=cuda
    python benchmarks/nuclei.py --method fit-once --preset default --param device=cuda

``engine`` runs :func:`napari_unsupervised_segmentation.segment` on each image;
``fit-once`` runs one :func:`~napari_unsupervised_segmentation.fit` on all the images and
labels each with ``model.predict``. Predictions are written as label TIFFs under
``benchmarks/results/dsb2018-dev/<method and settings>/<id>.tif``; an image whose TIFF is
already there is read back and scored, not run again (for ``engine``). The scores are
defined in ``shared/data/dsb2018/README.md`` and computed by ``object_scores.py``.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import object_scores  # (puts src/ on sys.path when the package is not installed)
from bsds import (
    _limit_threads,
    _usable_cpus,
    git_commit,
    machine,
    parse_param,
    read_ids,
    read_labels,
    write_labels,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "dsb2018"
DEFAULT_DOCS = REPO_ROOT / "docs" / "benchmarks.md"
SPLIT = "dev"
METHODS = ("otsu", "watershed", "engine", "fit-once")
DISPLAY_NAMES = {
    "otsu": "Otsu + connected components",
    "watershed": "Otsu + watershed",
    "engine": "engine, one image at a time",
    "fit-once": "engine, fit once",
}
SECTION = "## Nuclei (DSB 2018 `dev`)"
COLUMNS = (
    "method", "settings", "best IoU", "recall50", "F1@0.5", "foreground IoU",
    "median segments", "s/image", "n images", "commit", "machine", "date",
)  # fmt: skip
TABLE_HEADER = "| " + " | ".join(COLUMNS) + " |"


# --------------------------------------------------------------------------- data


def load_image(data: Path, image_id: str) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 RGB image ``<data>/dev/<id>.png``."""
    from skimage import io

    image = np.asarray(io.imread(data / SPLIT / f"{image_id}.png"))
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{image_id}: expected an (H, W, 3) uint8 image, got {image.shape}")
    return image


def load_nuclei(data: Path, image_id: str) -> np.ndarray:
    """The ``(H, W)`` instance labels ``<data>/dev/<id>_gt.tif`` (0 = background)."""
    import tifffile

    return np.asarray(tifffile.imread(data / SPLIT / f"{image_id}_gt.tif"))


# --------------------------------------------------------------------------- classic pipelines


def otsu_foreground(image: np.ndarray) -> np.ndarray:
    """Otsu's threshold of the smoothed gray image; the side with fewer pixels is foreground.

    So bright nuclei on a dark background and dark nuclei on a bright one both come out.
    """
    from skimage.color import rgb2gray
    from skimage.filters import gaussian, threshold_otsu

    smooth = gaussian(rgb2gray(image / 255), 1)
    bright = smooth > threshold_otsu(smooth)
    return bright if bright.mean() < 0.5 else ~bright


def otsu_components(image: np.ndarray) -> np.ndarray:
    """Otsu's two-valued mask (foreground 2, background 1); scoring splits it into components."""
    return otsu_foreground(image).astype(np.uint8) + 1


def otsu_watershed(image: np.ndarray) -> np.ndarray:
    """Otsu's foreground cut by a watershed of its distance transform (background 1)."""
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    foreground = otsu_foreground(image)
    distance = ndi.distance_transform_edt(foreground)
    peaks = peak_local_max(
        distance, min_distance=4, labels=ndi.label(foreground)[0], exclude_border=False
    )
    markers = np.zeros(foreground.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-distance, markers, mask=foreground) + 1


# --------------------------------------------------------------------------- engine


def engine_settings(args: argparse.Namespace) -> Any:
    """The preset ``--preset`` with the ``--param`` overrides (fails early when invalid)."""
    from napari_unsupervised_segmentation.core.params import PRESETS

    if args.preset not in PRESETS:
        raise SystemExit(f"--preset: unknown preset {args.preset!r} ({', '.join(PRESETS)})")
    try:
        return PRESETS[args.preset].replace(**dict(args.param))
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"--param: {exc}") from exc


def settings_text(args: argparse.Namespace) -> str:
    """What was run, as text for the table row and the results folder."""
    if args.method not in ("engine", "fit-once"):
        return ""
    return " ".join([f"preset={args.preset}", *(f"{k}={v}" for k, v in args.param)])


def results_folder(args: argparse.Namespace) -> Path:
    """Folder for the predictions: the method, its settings and, for the engine, a digest
    of every resolved setting (so that predictions of an older preset are not reused)."""
    tag = f"{args.method} {settings_text(args)}".strip()
    if args.method in ("engine", "fit-once"):
        resolved = json.dumps(str(engine_settings(args)), sort_keys=True)
        tag += " " + hashlib.sha1(resolved.encode()).hexdigest()[:8]
    return (
        REPO_ROOT / "benchmarks" / "results" / f"dsb2018-{SPLIT}" / re.sub(r"[^\w.=-]+", "_", tag)
    )


# --------------------------------------------------------------------------- run


_METHOD: Callable[[np.ndarray], np.ndarray] | None = None  # for forked workers


def _segment_one(data: Path, image_id: str, out: Path) -> float | None:
    """Segment one image and write its TIFF; the run time, or None when the TIFF exists."""
    path = out / f"{image_id}.tif"
    if path.exists():
        return None
    assert _METHOD is not None
    image = load_image(data, image_id)
    start = time.perf_counter()
    labels = np.asarray(_METHOD(image))
    seconds = time.perf_counter() - start
    write_labels(path, labels)
    print(f"{image_id[:12]}  {seconds:.2f} s", flush=True)
    return seconds


def _per_image(
    method: Callable[[np.ndarray], np.ndarray],
    data: Path,
    ids: Sequence[str],
    out: Path,
    jobs: int = 1,
) -> list[float]:
    """Segment each image (``jobs`` at once in forked processes), skipping those whose
    TIFF exists; the run times of the images segmented."""
    global _METHOD
    _METHOD = method
    try:
        if jobs <= 1:
            times = [_segment_one(data, image_id, out) for image_id in ids]
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            context = multiprocessing.get_context("fork")
            threads = max(1, _usable_cpus() // jobs)  # each worker its share of the CPUs
            with ProcessPoolExecutor(
                jobs, mp_context=context, initializer=_limit_threads, initargs=(threads,)
            ) as pool:
                n = len(ids)
                times = list(pool.map(_segment_one, [data] * n, ids, [out] * n))
    finally:
        _METHOD = None
    return [t for t in times if t is not None]


def _fit_once(args: argparse.Namespace, data: Path, ids: Sequence[str], out: Path) -> float:
    """One fit on all the images, then ``predict`` each; the total time per image."""
    from napari_unsupervised_segmentation import fit

    images = [load_image(data, image_id) for image_id in ids]
    start = time.perf_counter()
    model = fit(images, args.preset, channel_axis=-1, **dict(args.param))
    for image_id, image in zip(ids, images, strict=True):
        write_labels(out / f"{image_id}.tif", model.objects(image, channel_axis=-1))
    return (time.perf_counter() - start) / len(ids)


def _score_one(item: tuple[Path, Path, str]) -> object_scores.ImageStats:
    data, out, image_id = item
    return object_scores.image_stats(
        read_labels(out / f"{image_id}.tif"), load_nuclei(data, image_id)
    )


def score(data: Path, ids: Sequence[str], out: Path, jobs: int = 1) -> dict[str, float]:
    """Pool the scores of the predictions in ``out`` over ``ids``."""
    items = [(data, out, image_id) for image_id in ids]
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs) as pool:
            stats = list(pool.map(_score_one, items))
    else:
        stats = [_score_one(item) for item in items]
    return object_scores.combine(stats)


def format_row(name: str, settings: str, result: dict[str, float], seconds: float | None) -> str:
    """One markdown row of the nuclei table (columns :data:`COLUMNS`)."""
    cells = [
        name,
        f"`{settings}`" if settings else "",
        *(f"{result[key]:.4f}" for key in ("best_iou", "recall50", "f1", "fg_iou")),
        f"{result['median_segments']:g}",
        "n/a" if seconds is None else f"{seconds:.3f}" if seconds < 10 else f"{seconds:.1f}",
        f"{result['n_images']}",
        git_commit(),
        machine(),
        datetime.date.today().isoformat(),
    ]
    return "| " + " | ".join(cells) + " |"


def append_row(path: Path, row: str) -> None:
    """Add ``row`` at the end of the table of the nuclei section (section and table made
    when absent)."""
    lines = path.read_text().splitlines() if path.exists() else []
    if SECTION not in lines:
        lines += ["", SECTION, ""]
    start = lines.index(SECTION)
    following = [i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")]
    end = following[0] if following else len(lines)
    if TABLE_HEADER in lines[start:end]:
        at = lines.index(TABLE_HEADER, start) + 2
        while at < len(lines) and lines[at].startswith("|"):
            at += 1
        lines.insert(at, row)
    else:
        while end > start + 1 and not lines[end - 1].strip():
            end -= 1
        lines[end:end] = ["", TABLE_HEADER, "|---" * len(COLUMNS) + "|", row]
    path.write_text("\n".join(lines) + "\n")


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", choices=METHODS, default="watershed")
    parser.add_argument("--preset", default="default", help="engine preset (engine, fit-once)")
    parser.add_argument(
        "--param",
        type=parse_param,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting of the preset (repeatable)",
    )
    parser.add_argument("--ids", help="N (the first N), ids separated by commas, or a file")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="images at once (forked processes), segmenting and scoring",
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, help="folder of the prediction TIFFs")
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS)
    parser.add_argument("--no-docs", action="store_true", help="print the row only")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run, score, print the row and (unless ``--no-docs``) append it to the docs."""
    args = build_parser().parse_args(argv)
    if args.param and args.method not in ("engine", "fit-once"):
        raise SystemExit("--param applies to --method engine or fit-once only")
    ids = read_ids(args.data, SPLIT, args.ids)
    jobs = max(1, min(args.jobs, len(ids)))
    out = args.out or results_folder(args)
    out.mkdir(parents=True, exist_ok=True)
    if args.method == "fit-once":
        done = all((out / f"{image_id}.tif").exists() for image_id in ids)
        per_image = None if done else _fit_once(args, args.data, ids, out)
    else:
        if args.method == "engine":
            from napari_unsupervised_segmentation import segment

            settings = engine_settings(args)

            def method(image: np.ndarray) -> np.ndarray:
                return segment(image, settings, channel_axis=-1)

        else:
            method = otsu_components if args.method == "otsu" else otsu_watershed
        times = _per_image(method, args.data, ids, out, jobs)
        per_image = float(np.median(times)) if times else None
    result = score(args.data, ids, out, jobs=jobs)
    row = format_row(DISPLAY_NAMES[args.method], settings_text(args), result, per_image)
    print(TABLE_HEADER)
    print(row)
    print(f"{result['n_nuclei']} nuclei; predictions in {out}", file=sys.stderr)
    if not args.no_docs:
        append_row(args.docs, row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
