"""Command line: segment image files (or bundled samples) into label TIFFs."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .core.params import PRESETS, SegmentationParams

PROG = "unsupervised-segmentation"


def build_parser() -> argparse.ArgumentParser:
    """Arguments: inputs, output folder, preset, channel axis and every engine parameter."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Segment images with a CNN that self-trains on each image (Kanezaki, ICASSP 2018) "
            "and write one label TIFF per image."
        ),
    )
    parser.add_argument("images", nargs="*", type=Path, help="image files to segment")
    parser.add_argument("--out", type=Path, required=True, help="folder for the label TIFFs")
    parser.add_argument(
        "--sample",
        action="append",
        default=[],
        metavar="NAME",
        help="segment a bundled sample image instead of / besides files (coffee, ihc)",
    )
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), default="default", help="parameter set to start from"
    )
    parser.add_argument(
        "--channel-axis",
        default="auto",
        metavar="AXIS",
        help="channel axis, 'none' for grayscale, or 'auto': (H, W) grayscale, (H, W, 3|4) colour",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace label TIFFs that already exist in --out (default: refuse to start)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    engine = parser.add_argument_group("engine parameters (default: the preset's value)")
    for field in dataclasses.fields(SegmentationParams):
        flag = "--" + field.name.replace("_", "-")
        # SUPPRESS: a flag the user did not give leaves the preset's value alone.
        options: dict[str, Any] = {"default": argparse.SUPPRESS, "help": field.metadata["help"]}
        if field.type in ("bool", bool):
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["type"] = _parser_for(field.name)
        engine.add_argument(flag, **options)
    return parser


def _parser_for(name: str):
    """Type converter of one parameter, from the type of its default."""
    if name == "seed":
        return lambda text: None if text.lower() == "none" else int(text)
    default = getattr(SegmentationParams(), name)
    return type(default)


def params_from_args(args: argparse.Namespace) -> SegmentationParams:
    """The preset with every flag the user gave applied on top."""
    overrides = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(SegmentationParams)
        if hasattr(args, field.name)
    }
    return PRESETS[args.preset].replace(**overrides)


def guess_channel_axis(image: np.ndarray, setting: str) -> int | None:
    """``'auto'``: 2D is grayscale and a last axis of 3 or 4 is colour; else the given axis."""
    if setting.lower() == "none":
        return None
    if setting.lower() != "auto":
        return int(setting)
    if image.ndim == 2:
        return None
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        return -1
    raise ValueError(
        f"cannot tell the channel axis of an image of shape {image.shape}; "
        "pass --channel-axis (e.g. 0 for (C, H, W)) or --channel-axis none"
    )


def read_image(path: Path) -> np.ndarray:
    """Pixels of an image file (TIFF through tifffile, other formats through imageio)."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    from skimage.io import imread

    return imread(path)


def segment_to_file(
    name: str,
    image: np.ndarray,
    out_dir: Path,
    args: argparse.Namespace,
    params: SegmentationParams,
) -> Path:
    """Segment one image with a progress bar over iterations; write ``<name>_labels.tif``."""
    from tqdm import tqdm

    from .core import iter_segment
    from .io import write_label_tiff

    channel_axis = guess_channel_axis(image, args.channel_axis)
    step = None
    with tqdm(total=params.max_iter, desc=name, unit="it", leave=False, disable=args.quiet) as bar:
        for step in iter_segment(image, params, channel_axis=channel_axis):
            bar.update(1)
            bar.set_postfix(labels=step.n_labels)
    assert step is not None
    return write_label_tiff(output_path(out_dir, name), step.labels)


def output_path(out_dir: Path, name: str) -> Path:
    """The label TIFF written for the input called ``name``."""
    return out_dir / f"{name}_labels.tif"


def _overwrite_problems(args: argparse.Namespace, names: Sequence[str]) -> list[str]:
    """Why writing the outputs of ``names`` would destroy a file, one message per output.

    An output that is one of the input images is always refused (it would be overwritten
    before it is read); any other existing output only without ``--overwrite``.
    """
    problems = []
    for name in names:
        target = output_path(args.out, name)
        if not target.exists():
            continue
        if any(path.exists() and target.samefile(path) for path in args.images):
            problems.append(f"{target} is one of the input images")
        elif not args.overwrite:
            problems.append(f"{target} exists (pass --overwrite to replace it)")
    return problems


def _inputs(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """(name, loader) for every sample and file, in the order given."""
    from ._sample_data import load_sample

    inputs: list[tuple[str, Any]] = []
    for sample in args.sample:
        inputs.append((sample, lambda sample=sample: load_sample(sample)[0]))
    for path in args.images:
        inputs.append((path.stem, lambda path=path: read_image(path)))
    return _unique_names(inputs)


def _unique_names(inputs: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Suffix repeated names (``a/x.tif``, ``b/x.png``) so no output overwrites another."""
    used: set[str] = set()  # compared case-insensitively, as on macOS and Windows
    unique = []
    for name, load in inputs:
        candidate, number = name, 1
        while candidate.lower() in used:
            number += 1
            candidate = f"{name}_{number}"
        used.add(candidate.lower())
        unique.append((candidate, load))
    return unique


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; exit code 0 when every image was written, 1 otherwise."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.images and not args.sample:
        parser.error("give image files and/or --sample NAME")
    try:
        params = params_from_args(args)
    except (ValueError, TypeError) as error:
        parser.error(str(error))
    from tqdm import tqdm

    inputs = _inputs(args)
    problems = _overwrite_problems(args, [name for name, _ in inputs])
    if problems:
        parser.error("not overwriting: " + "; ".join(problems))
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        parser.error(f"--out {args.out}: {error}")
    failures = 0
    for name, load in tqdm(
        inputs, desc="images", unit="image", disable=args.quiet or len(inputs) < 2
    ):
        try:
            written = segment_to_file(name, load(), args.out, args, params)
        except Exception as error:  # one bad file must not stop the others
            failures += 1
            print(f"{PROG}: skipped {name}: {error}", file=sys.stderr)
        else:
            if not args.quiet:
                tqdm.write(f"wrote {written}")
    if failures:
        print(f"{PROG}: {failures} of {len(inputs)} image(s) failed", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
