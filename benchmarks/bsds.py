"""Run a segmentation method on BSDS500 images, score it, and log the row in docs/benchmarks.md.

Examples
--------
::

    python benchmarks/bsds.py --method graph --scale 500
    python benchmarks/bsds.py --method kmeans --k 8 --alpha 5
    python benchmarks/bsds.py --method paper --ids 10 --param device=cuda --param precision=tf32
    python benchmarks/bsds.py --method paper --param device=cpu --jobs 2  # 2 images at once
    python benchmarks/bsds.py --method demo --quirks frozen,init --param device=cuda

Predictions are written as label TIFFs under ``--out`` (default
``benchmarks/results/<split>/<method and settings>/<id>.tif``); an image whose TIFF is
already there is not run again but read back and scored, so an interrupted run resumes.
The scores are defined in ``shared/data/bsds500/README.md`` and computed by ``scores.py``.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

import baselines
import demo_loop
import scores  # (puts src/ on sys.path when the package is not installed)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "bsds500"
DEFAULT_DOCS = REPO_ROOT / "docs" / "benchmarks.md"
METHODS = ("ours", "paper", "demo", "graph", "kmeans", "blank")
DISPLAY_NAMES = {
    "ours": "ours",
    "paper": "paper",
    "demo": "paper's loop, public demo",
    "graph": "graph-based (Felzenszwalb)",
    "kmeans": "k-means",
    "blank": "blank",
}
#: The score columns of a row, each with its key in :func:`scores.combine`'s result.
SCORE_KEYS = {
    "mIoU all": "miou_all", "fine": "miou_fine", "coarse": "miou_coarse", "SC": "sc",
    "PRI": "pri", "VI": "vi", "AP@0.5": "ap50", "AP@0.7": "ap70",
}  # fmt: skip
#: Columns of a row: what was run and its scores, then where and when it ran.
SCORE_COLUMNS = (
    "method", "settings", "split", *SCORE_KEYS, "median segments", "s/image", "n images",
)  # fmt: skip
PROVENANCE_COLUMNS = ("commit", "machine", "date")


def table_header(columns: Sequence[str]) -> str:
    """The markdown header line of a table with ``columns``."""
    return "| " + " | ".join(columns) + " |"


def table_separator(columns: Sequence[str]) -> str:
    """The markdown line under the header of a table with ``columns``."""
    return "|---" * len(columns) + "|"


TABLE_HEADER = table_header(SCORE_COLUMNS + PROVENANCE_COLUMNS)
DOCS_INTRO = """# Benchmarks

Scores on the BSDS500 splits (Arbelaez et al., TPAMI 2011) as defined in
`shared/data/bsds500/README.md`: mIoU (TIP 2020 protocol: all / fine / coarse annotation,
pooled over the split), Segmentation Covering (pooled), PRI and VI (log2; averaged over
annotations, then images) and AP@0.5 / AP@0.7 (segments ranked by size, averaged over images).
Every prediction is split into 4-connected segments before scoring. Higher is better except
VI. Rows are appended by `python benchmarks/bsds.py` (see its `--help`); "s/image" is the
method's own run time per image, without reading, writing or scoring.

Reference rows on `val` (100 images), from the data set's README: blank mIoU
0.0510 / 0.0273 / 0.1063; graph-based (`felzenszwalb(scale=500, sigma=0.5, min_size=20)`)
mIoU 0.3278 / 0.2796 / 0.3950, SC 0.4820, PRI 0.7740, VI 2.9075, AP@0.5 0.1692, AP@0.7 0.0834,
median 639 segments; the paper's loop, 500 iterations: mIoU 0.2146 / 0.1537 / 0.3342,
SC 0.5061, PRI 0.6805, VI 2.0500, AP@0.5 0.1441, AP@0.7 0.0728, median 137 segments.

"""


class Trained(NamedTuple):
    """A self-training method's labels and the SGD updates it made before stopping."""

    labels: np.ndarray
    iterations: int


#: Labels for an image; the self-training methods also say how many iterations they ran.
Method = Callable[[np.ndarray], "np.ndarray | Trained"]
ENGINE_METHODS = ("ours", "paper", "demo")  # the engine's settings; --param applies


# --------------------------------------------------------------------------- data


def _is_file(spec: str) -> bool:
    """Whether ``spec`` names a file (a long list of ids is no valid path: not an error)."""
    try:
        return Path(spec).is_file()
    except OSError:  # e.g. a file name too long for the file system
        return False


def read_ids(data: Path, split: str, spec: str | None = None) -> list[str]:
    """Image ids of ``split``: all, the first N, a comma-separated list, or those in a file.

    Parameters
    ----------
    data : Path
        The BSDS500 folder (with ``<split>_ids.txt``).
    split : str
        ``"val"`` or ``"train"``.
    spec : str or None
        ``None`` (all), an integer N (the first N ids), ids separated by commas or spaces,
        or the path of a text file with one id per line (``#`` starts a comment).
    """
    all_ids = (data / f"{split}_ids.txt").read_text().split()
    if spec is None:
        return all_ids
    spec = spec.strip()
    if _is_file(spec):
        lines = (line.split("#", 1)[0] for line in Path(spec).read_text().splitlines())
        ids = [token for line in lines for token in line.split()]
    elif spec.isdigit() and spec not in all_ids:
        return all_ids[: int(spec)]
    else:
        ids = [token for token in re.split(r"[,\s]+", spec) if token]
    unknown = [i for i in ids if i not in all_ids]
    if unknown:
        raise ValueError(f"not in the {split} split: {', '.join(unknown)}")
    return ids


def load_image(data: Path, split: str, image_id: str) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 RGB image ``<data>/<split>/<id>.jpg``."""
    from skimage import io

    image = np.asarray(io.imread(data / split / f"{image_id}.jpg"))
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{image_id}: expected an (H, W, 3) uint8 image, got {image.shape}")
    return image


def load_annotations(data: Path, split: str, image_id: str) -> np.ndarray:
    """The ``(A, H, W)`` human segmentations of one image."""
    with np.load(data / split / f"{image_id}_gt.npz") as npz:
        return npz["seg"]


def write_labels(path: Path, labels: np.ndarray) -> None:
    """Write a label TIFF with the project's writer (atomic: no half-written file remains)."""
    from napari_unsupervised_segmentation.io import write_label_tiff

    write_label_tiff(path, labels)


def read_labels(path: Path) -> np.ndarray:
    """Read back a label TIFF written by :func:`write_labels`."""
    from napari_unsupervised_segmentation.io import read_label_tiff

    return np.asarray(read_label_tiff(path)[0])


# --------------------------------------------------------------------------- methods


def parse_param(text: str) -> tuple[str, Any]:
    """``key=value`` to ``(key, value)``, the value read as a Python literal when it is one."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    raw = raw.strip()
    lowered = {"true": True, "false": False, "none": None}
    if raw.lower() in lowered:
        return key.strip(), lowered[raw.lower()]
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key.strip(), value


def make_method(args: argparse.Namespace) -> tuple[Method, str]:
    """The segmentation function of ``args.method`` and its settings as text."""
    if args.param and args.method not in ENGINE_METHODS:
        raise SystemExit("--param applies to --method ours, paper or demo only")
    if args.quirks is not None and args.method != "demo":
        raise SystemExit("--quirks applies to --method demo only")
    if args.method == "blank":
        return baselines.blank, ""
    if args.method == "graph":
        settings = f"scale={args.scale:g} sigma={args.sigma:g} min_size={args.min_size}"

        def graph(image: np.ndarray) -> np.ndarray:
            return baselines.graph_based(image, args.scale, args.sigma, args.min_size)

        return graph, settings
    if args.method == "kmeans":
        settings = f"k={args.k} alpha={args.alpha} seed={args.seed}"

        def kmeans(image: np.ndarray) -> np.ndarray:
            return baselines.kmeans_segmentation(image, args.k, args.alpha, args.seed)

        return kmeans, settings
    preset = "default" if args.method == "ours" else "paper"
    overrides = dict(args.param)
    settings = " ".join([f"preset={preset}", *(f"{k}={v}" for k, v in overrides.items())])
    engine_params(args)  # fail now, not on every image, for an unknown or invalid setting
    if args.method == "demo":
        try:
            quirks = demo_loop.parse_quirks(args.quirks or ",".join(demo_loop.CURRENT_DEMO))
            demo_loop.check_overrides(overrides)
        except ValueError as exc:
            raise SystemExit(f"--method demo: {exc}") from exc
        settings += f" quirks={','.join(quirks) or 'none'}"

        def demo(image: np.ndarray) -> Trained:
            return Trained(*demo_loop.demo_train(image, quirks, **overrides))

        return demo, settings

    def engine(image: np.ndarray) -> Trained:
        from napari_unsupervised_segmentation import iter_segment

        # segment() returns the same labels; the last step also tells the iterations run
        last_step = deque(iter_segment(image, preset, channel_axis=-1, **overrides), maxlen=1)[0]
        return Trained(np.asarray(last_step.labels), last_step.iteration)

    return engine, settings


# --------------------------------------------------------------------------- run and score


def run(
    method: Method,
    data: Path,
    split: str,
    ids: Sequence[str],
    out: Path,
    *,
    log: Callable[[str], None] = print,
    jobs: int = 1,
) -> tuple[list[scores.ImageStats], dict[str, float], dict[str, str]]:
    """Segment (unless already done) and score every image.

    The labels go to ``out/<id>.tif``, the seconds to ``out/times.json`` and, for a method
    that returns :class:`Trained`, the iterations it ran to ``out/iterations.json``.

    Parameters
    ----------
    jobs : int
        Images segmented at once, each in its own process with an equal share of the CPU
        threads (Linux and macOS: the workers are forked, so ``method`` need not pickle).

    Returns
    -------
    stats : list of ImageStats
        One per image that was scored.
    times : dict
        Seconds the method took, per image id (also for earlier, resumed runs).
    failures : dict
        Error message per image id that failed.
    """
    out.mkdir(parents=True, exist_ok=True)
    times_path, iterations_path = out / "times.json", out / "iterations.json"
    times: dict[str, float] = read_json(times_path)
    iterations: dict[str, int] = read_json(iterations_path)
    failures: dict[str, str] = {}
    ids = list(dict.fromkeys(ids))  # an id listed twice is segmented and scored once
    pending = [i for i in ids if not (out / f"{i}.tif").exists()]
    for n, (image_id, seconds, trained, error) in enumerate(
        _segment_all(method, data, split, pending, out, jobs), 1
    ):
        if error is not None:
            failures[image_id] = error.splitlines()[0]
            log(f"[{n}/{len(pending)}] {image_id}: FAILED {error}")
            continue
        times[image_id] = seconds
        times_path.write_text(json.dumps(times, indent=0, sort_keys=True))
        note = ""
        if trained is not None:
            iterations[image_id] = trained
            iterations_path.write_text(json.dumps(iterations, indent=0, sort_keys=True))
            note = f", {trained} iterations"
        log(f"[{n}/{len(pending)}] {image_id}: {seconds:.2f} s{note}")
    scored, unscored = score_folder(data, split, [i for i in ids if i not in failures], out, log)
    failures.update(unscored)
    log(f"scored {len(scored)} of {len(ids)} images")
    if scored:
        rows = [{"id": image_id, **stats.as_dict()} for image_id, stats in scored.items()]
        header = list(rows[0])
        lines = [",".join(header)] + [",".join(str(r[h]) for h in header) for r in rows]
        (out / "scores.csv").write_text("\n".join(lines) + "\n")
    return list(scored.values()), {i: times[i] for i in ids if i in times}, failures


def score_folder(
    data: Path,
    split: str,
    ids: Sequence[str],
    folder: Path,
    log: Callable[[str], None] = print,
) -> tuple[dict[str, scores.ImageStats], dict[str, str]]:
    """Score the predictions ``folder/<id>.tif`` of ``ids`` against the annotations.

    Returns
    -------
    scored : dict
        :class:`scores.ImageStats` per image id, in the order of ``ids``.
    failures : dict
        Error message per image id that could not be read or scored (also logged with its
        traceback); the other images still score.
    """
    scored: dict[str, scores.ImageStats] = {}
    failures: dict[str, str] = {}
    for image_id in ids:
        try:
            labels = read_labels(folder / f"{image_id}.tif")
            scored[image_id] = scores.image_stats(labels, load_annotations(data, split, image_id))
        except Exception as exc:  # one failing image must not stop the run
            failures[image_id] = f"{type(exc).__name__}: {exc}"
            log(f"{image_id}: FAILED {failures[image_id]}\n{traceback.format_exc()}")
    return scored, failures


def read_json(path: Path) -> dict[str, Any]:
    """The mapping saved in ``path`` (``times.json``, ``iterations.json``), or ``{}``."""
    return json.loads(path.read_text()) if path.exists() else {}


#: Image id, seconds, iterations (self-training methods), error and traceback.
SegmentResult = tuple[str, float | None, int | None, str | None]


def _segment(method: Method, data: Path, split: str, image_id: str, out: Path) -> SegmentResult:
    """Segment one image and write its label TIFF; errors are returned, not raised."""
    try:
        image = load_image(data, split, image_id)
        start = time.perf_counter()
        result = method(image)
        seconds = time.perf_counter() - start
        labels, iterations = result if isinstance(result, Trained) else (result, None)
        write_labels(out / f"{image_id}.tif", labels)
    except Exception as exc:
        return image_id, None, None, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
    return image_id, seconds, iterations, None


_WORKER_METHOD: Method | None = None  # set before forking the workers, which inherit it


def _limit_threads(threads: int) -> None:
    """Worker initializer: give each worker its share of the CPU threads (torch, OpenMP)."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # for a torch imported from now on
        os.environ[name] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _segment_in_worker(data: Path, split: str, image_id: str, out: Path) -> SegmentResult:
    assert _WORKER_METHOD is not None
    return _segment(_WORKER_METHOD, data, split, image_id, out)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def _segment_all(
    method: Method, data: Path, split: str, ids: Sequence[str], out: Path, jobs: int
) -> Iterator[SegmentResult]:
    """Segment the images one by one, or ``jobs`` at once in forked worker processes.

    A worker that dies (killed for memory, say) fails the images not yet done, not the run.
    """
    jobs = min(jobs, len(ids))
    if jobs <= 1:
        for image_id in ids:
            yield _segment(method, data, split, image_id, out)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    global _WORKER_METHOD
    try:
        context = multiprocessing.get_context("fork")
    except ValueError as exc:
        raise SystemExit("--jobs > 1 needs the fork start method (Linux, macOS)") from exc
    _WORKER_METHOD = method
    threads = max(1, _usable_cpus() // jobs)
    try:
        with ProcessPoolExecutor(
            jobs, mp_context=context, initializer=_limit_threads, initargs=(threads,)
        ) as pool:
            futures = {
                pool.submit(_segment_in_worker, data, split, image_id, out): image_id
                for image_id in ids
            }
            for future in as_completed(futures):
                try:
                    yield future.result()
                except BrokenProcessPool as exc:
                    yield futures[future], None, None, f"worker process died: {exc}"
    finally:
        _WORKER_METHOD = None


def machine() -> str:
    """CPU model (and GPU name where torch is loaded and sees CUDA) of this machine."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu or platform.processor() or platform.machine()} x{os.cpu_count()}"
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            text += f", {torch.cuda.get_device_name()}"
    except Exception:  # a broken CUDA set-up must not lose the row
        pass
    return text


def git_commit() -> str:
    """``git rev-parse --short HEAD``, or ``n/a``."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "n/a"
    return result.stdout.strip() or "n/a"


def _number(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}f}"


def format_row(
    method: str,
    settings: str,
    split: str,
    result: dict[str, float],
    seconds: float | None,
    n_failed: int = 0,
    extra: Sequence[str] = (),
) -> str:
    """One markdown table row (columns of :data:`TABLE_HEADER`, without ``extra`` if empty)."""
    median = result["median_segments"]
    n_images = f"{result['n_images']}" + (f" ({n_failed} failed)" if n_failed else "")
    cells = [
        method,
        f"`{settings}`" if settings else "",
        split,
        *(_number(result[key]) for key in SCORE_KEYS.values()),
        f"{median:.0f}" if float(median).is_integer() else f"{median:.1f}",
        "n/a" if seconds is None else f"{seconds:.3f}" if seconds < 10 else f"{seconds:.1f}",
        n_images,
        *extra,
    ]
    return "| " + " | ".join(cells) + " |"


def append_row(path: Path, row: str) -> None:
    """Add ``row`` at the end of the results table of ``path`` (created when absent)."""
    separator = table_separator(SCORE_COLUMNS + PROVENANCE_COLUMNS)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{DOCS_INTRO}{TABLE_HEADER}\n{separator}\n{row}\n")
        return
    lines = path.read_text().splitlines()
    if TABLE_HEADER not in lines:
        lines += ["", TABLE_HEADER, separator, row]
    else:
        end = lines.index(TABLE_HEADER) + 1
        while end < len(lines) and lines[end].startswith("|"):
            end += 1
        lines.insert(end, row)
    path.write_text("\n".join(lines) + "\n")


def engine_params(args: argparse.Namespace) -> Any:
    """The engine's settings for ``--method ours|paper|demo`` with the ``--param`` overrides."""
    from napari_unsupervised_segmentation.core.params import PRESETS

    preset = "default" if args.method == "ours" else "paper"  # the demo: paper's settings
    try:
        return PRESETS[preset].replace(**dict(args.param))
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"--param: {exc}") from exc


def _tag(args: argparse.Namespace, settings: str) -> str:
    """Folder name for the predictions of a method and its settings.

    For the engine it ends in a digest of every resolved setting, so that predictions made
    before a preset changed are never taken for the new preset's when a run resumes.
    """
    tag = f"{args.method} {settings}".strip()
    if args.method in ENGINE_METHODS:
        tag += " " + hashlib.sha1(repr(engine_params(args)).encode()).hexdigest()[:10]
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", tag)


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(
        description="Segment BSDS500 images, score them, and append the row to docs/benchmarks.md."
    )
    parser.add_argument("--method", choices=METHODS, required=True)
    parser.add_argument("--split", choices=("val", "train"), default="val")
    parser.add_argument(
        "--ids", help="N (the first N), ids separated by commas, or a file of ids (default: all)"
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the BSDS500 folder")
    parser.add_argument(
        "--out", type=Path, help="prediction folder (default benchmarks/results/<split>/<tag>)"
    )
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS, help="file to append the row to")
    parser.add_argument("--no-docs", action="store_true", help="print the row only")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="images segmented at once, in processes sharing the CPU threads (s/image is then "
        "each process's time; the row's settings say jobs=N when this run segmented images "
        "in parallel)",
    )
    graph = parser.add_argument_group("graph-based")
    graph.add_argument("--scale", type=float, default=500.0, help="(the paper: 100..2000)")
    graph.add_argument("--sigma", type=float, default=0.5)
    graph.add_argument("--min-size", type=int, default=20)
    kmeans = parser.add_argument_group("k-means")
    kmeans.add_argument("--k", type=int, default=8, help="clusters (the paper: 2..20)")
    kmeans.add_argument("--alpha", type=int, default=5, help="window side (the paper: 1,3,5,7)")
    kmeans.add_argument("--seed", type=int, default=0)
    demo = parser.add_argument_group("demo (the paper preset's settings, the demo's loop)")
    demo.add_argument(
        "--quirks",
        help=f"the public demo's departures from the paper to copy: comma-separated from "
        f"{', '.join(demo_loop.QUIRKS)}, or all, or none (default: today's demo, "
        f"{','.join(demo_loop.CURRENT_DEMO)}; see demo_loop.py)",
    )
    engine = parser.add_argument_group("ours / paper / demo")
    engine.add_argument(
        "--param",
        type=parse_param,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an engine parameter, e.g. max_iter=200 or device=cuda (repeatable)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    method, settings = make_method(args)
    ids = read_ids(args.data, args.split, args.ids)
    tag = _tag(args, settings)
    out = args.out or REPO_ROOT / "benchmarks" / "results" / args.split / tag
    print(f"{args.method} {settings} on {len(ids)} {args.split} images -> {out}", file=sys.stderr)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if args.jobs < 1:
        raise SystemExit("--jobs must be >= 1")
    in_parallel = args.jobs > 1 and sum(not (out / f"{i}.tif").exists() for i in ids) > 1
    stats, times, failures = run(method, args.data, args.split, ids, out, log=log, jobs=args.jobs)
    for image_id, message in failures.items():
        print(f"failed: {image_id}: {message}", file=sys.stderr)
    if not stats:
        print("no image could be scored", file=sys.stderr)
        return 1
    result = scores.combine(stats)
    seconds = float(np.mean(list(times.values()))) if times else None
    extra = (git_commit(), machine(), datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"))
    if in_parallel:  # said in the row, not in the folder name: resuming works either way
        settings = f"{settings} jobs={args.jobs}".strip()
    row = format_row(
        DISPLAY_NAMES[args.method], settings, args.split, result, seconds, len(failures), extra
    )
    print(TABLE_HEADER)
    print(row)
    if not args.no_docs:
        append_row(args.docs, row)
        print(f"appended to {args.docs}", file=sys.stderr)
    return 0 if not failures else 2


if __name__ == "__main__":
    sys.exit(main())
