"""Score prediction folders of ``bsds.py`` on the images they all have, and compare them.

A run of the paper's loop on a CPU takes hours, so it is often scored part-way (while it
still runs, or after it stopped), and two such runs can only be compared on the images both
have done: image sets differ by more than methods do. This script segments nothing and
writes nothing. For each folder it prints a row with the scores of ``bsds.py``'s table on
those images (named by the folder); with two or more folders it adds every folder's
difference from the first with a paired bootstrap 95% interval (images resampled with
replacement, the same resample for both folders). With ``--estimate`` the first folder is a
deterministic reference that holds every image (the graph-based baseline): each other
folder's scores on the shared images are corrected by the reference's offset between those
images and all of its own, an estimate of what the folder would score on the whole split.

Examples
--------
::

    python benchmarks/compare.py benchmarks/results/val/paper_preset=paper_device=cpu_<digest>
    python benchmarks/compare.py FOLDER_A FOLDER_B --ids 25 --resamples 5000
    python benchmarks/compare.py GRAPH_FOLDER PAPER_FOLDER --estimate
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import bsds
import scores

#: The scores whose differences get an interval (pooled or averaged as in the benchmark),
#: and their column names.
COMPARED = {"miou_all": "mIoU all", "sc": "SC", "pri": "PRI", "vi": "VI"}


def common_ids(folders: Sequence[Path], candidates: Sequence[str]) -> list[str]:
    """The ids of ``candidates`` (in their order) with a prediction in every folder."""
    return [i for i in candidates if all((f / f"{i}.tif").is_file() for f in folders)]


def paired_bootstrap(
    first: Sequence[scores.ImageStats],
    second: Sequence[scores.ImageStats],
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """95% percentile interval of ``second`` minus ``first`` for each score of :data:`COMPARED`.

    ``first[i]`` and ``second[i]`` are the same image; each resample draws images with
    replacement and pools both folders' statistics over the same draw.
    """
    if len(first) != len(second) or not first:
        raise ValueError("need the same, non-zero number of images in both")
    rng = np.random.default_rng(seed)
    differences: dict[str, list[float]] = {key: [] for key in COMPARED}
    for _ in range(resamples):
        draw = rng.integers(0, len(first), len(first))
        a = scores.combine([first[i] for i in draw])
        b = scores.combine([second[i] for i in draw])
        for key in COMPARED:
            differences[key].append(b[key] - a[key])
    return {
        key: (float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5)))
        for key, d in differences.items()
    }


def folder_row(
    folder: Path, ids: Sequence[str], stats: Sequence[scores.ImageStats], split: str
) -> str:
    """The ``bsds.py`` table row of ``folder`` on ``ids`` (seconds: mean of its times.json)."""
    times = bsds.read_json(folder / "times.json")
    seconds = [times[i] for i in ids if i in times]
    mean_seconds = float(np.mean(seconds)) if seconds else None
    return bsds.format_row(folder.name, "", split, scores.combine(stats), mean_seconds)


def iterations_note(folder: Path, ids: Sequence[str]) -> str | None:
    """Median and range of the iterations a self-training run made on ``ids``, if recorded."""
    iterations = bsds.read_json(folder / "iterations.json")
    counts = [iterations[i] for i in ids if i in iterations]
    if not counts:
        return None
    return (
        f"{folder.name}: iterations median {np.median(counts):g}, "
        f"{min(counts)} to {max(counts)} ({len(counts)} images)"
    )


def difference_row(
    name: str,
    first: Sequence[scores.ImageStats],
    second: Sequence[scores.ImageStats],
    resamples: int,
    seed: int,
) -> str:
    """Markdown row: ``second`` minus ``first`` for each compared score, with its interval."""
    a, b = scores.combine(first), scores.combine(second)
    intervals = paired_bootstrap(first, second, resamples, seed)
    finer = sum(s.n_segments > f.n_segments for f, s in zip(first, second, strict=True))
    cells = [
        f"{b[key] - a[key]:+.4f} ({low:+.4f} to {high:+.4f})"
        for key, (low, high) in intervals.items()
    ]
    return f"| {name} | " + " | ".join(cells) + f" | {finer} of {len(first)} |"


def _log(message: str) -> None:
    print(message, file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].replace("``", ""),
        epilog="Exit status 1: no image in every folder; 2: an image could not be scored "
        "(it is left out of every row).",
    )
    parser.add_argument("folders", type=Path, nargs="+", help="prediction folders of bsds.py")
    parser.add_argument("--split", choices=("val", "train"), default="val")
    parser.add_argument("--data", type=Path, default=bsds.DEFAULT_DATA, help="the BSDS500 folder")
    parser.add_argument(
        "--ids", help="N (the first N), ids separated by commas, or a file of ids (default: all)"
    )
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap draws")
    parser.add_argument(
        "--estimate",
        action="store_true",
        help="correct the other folders' scores by the first folder's offset between the "
        "shared images and all the images it holds (a whole-split estimate from a subset)",
    )
    return parser


def offset_estimate(
    subset: dict[str, float], reference_subset: dict[str, float], reference_all: dict[str, float]
) -> dict[str, float]:
    """``subset`` minus the reference's subset-to-whole difference, for each compared score."""
    return {key: subset[key] - (reference_subset[key] - reference_all[key]) for key in COMPARED}


def _estimate_rows(args: argparse.Namespace, ids: list[str], per_folder: list[dict]) -> None:
    """Print the offset-corrected estimate of every folder after the first (``--estimate``)."""
    reference = args.folders[0]
    everything = common_ids([reference], bsds.read_ids(args.data, args.split))
    scored_all, _ = bsds.score_folder(args.data, args.split, everything, reference, log=_log)
    reference_all = scores.combine(list(scored_all.values()))
    reference_subset = scores.combine([per_folder[0][i] for i in ids])
    columns = [f"estimate from {len(ids)} images", *COMPARED.values()]
    print(f"\n{bsds.table_header(columns)}\n{bsds.table_separator(columns)}")
    print(f"| {reference.name}: all {len(scored_all)} images | "
          + " | ".join(f"{reference_all[k]:.4f}" for k in COMPARED) + " |")  # fmt: skip
    for folder, scored in zip(args.folders[1:], per_folder[1:], strict=True):
        subset = scores.combine([scored[i] for i in ids])
        estimate = offset_estimate(subset, reference_subset, reference_all)
        print(f"| {folder.name} | " + " | ".join(f"{estimate[k]:.4f}" for k in COMPARED) + " |")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 if an image could not be scored)."""
    args = build_parser().parse_args(argv)
    if args.resamples < 1:
        raise SystemExit("--resamples must be >= 1")
    candidates = list(dict.fromkeys(bsds.read_ids(args.data, args.split, args.ids)))
    ids = common_ids(args.folders, candidates)
    print(f"{len(ids)} of {len(candidates)} {args.split} images in every folder", file=sys.stderr)
    if not ids:
        empty = [str(f) for f in args.folders if not common_ids([f], candidates)]
        if empty:
            print(f"no prediction of these images in: {', '.join(empty)}", file=sys.stderr)
        return 1
    per_folder, failed = [], set()
    for folder in args.folders:
        scored, failures = bsds.score_folder(
            args.data,
            args.split,
            ids,
            folder,
            log=lambda message, f=folder: _log(f"{f}: {message}"),
        )
        per_folder.append(scored)
        failed.update(failures)
    ids = [i for i in ids if i not in failed]
    if not ids:
        return 2
    print(bsds.table_header(bsds.SCORE_COLUMNS))
    print(bsds.table_separator(bsds.SCORE_COLUMNS))
    for folder, scored in zip(args.folders, per_folder, strict=True):
        print(folder_row(folder, ids, [scored[i] for i in ids], args.split))
    notes = [iterations_note(folder, ids) for folder in args.folders]
    if any(notes):
        print()
    for note in filter(None, notes):
        print(note)
    if len(args.folders) > 1:
        columns = [f"minus {args.folders[0].name}", *COMPARED.values(), "images with more segments"]
        print(f"\n{bsds.table_header(columns)}\n{bsds.table_separator(columns)}")
        first = [per_folder[0][i] for i in ids]
        for folder, scored in zip(args.folders[1:], per_folder[1:], strict=True):
            second = [scored[i] for i in ids]
            print(difference_row(folder.name, first, second, args.resamples, args.seed))
        if args.estimate:
            _estimate_rows(args, ids, per_folder)
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
