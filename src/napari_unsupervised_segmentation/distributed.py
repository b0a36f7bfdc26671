"""Labelling many files on a dask.distributed cluster: one task per file, the model sent once.

The only module that imports ``dask.distributed``, and only inside its functions: the default
install, the command line without ``--dask`` and the napari plugin never need it
(``pip install "napari-unsupervised-segmentation[distributed]"``).

Each task reads one input on a worker, labels it exactly as the command line does in one
process (:func:`~napari_unsupervised_segmentation.cli.segment_to_file`) and publishes its
outputs there; what comes back to the client is a small :class:`FileResult`. So the workers
must see the inputs and the output folder at the same paths as the client (one computer, or
a shared file system on a cluster).

- The trained model is scattered to every worker once (``client.scatter(...,
  broadcast=True)``), never sent with each task.
- Outputs are published atomically (written under a hidden name, then linked or renamed), so
  a worker lost mid-file leaves no partial output; the scheduler runs its tasks again on
  another worker, and a file whose outputs are all complete is skipped, not written twice.
- A file that fails (unreadable, wrong channels) is reported with its reason and the others
  finish; a rerun skips the files whose outputs are complete (resumable).
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from distributed import Client

    from .core.fitted import SegmentationModel
    from .core.params import SegmentationParams

#: What a task did with one input: wrote its outputs, found them complete, or failed.
Status = Literal["written", "skipped", "failed"]


@dataclass(frozen=True)
class FileResult:
    """What became of one input.

    ``path`` is its label output (written, or found complete); ``error`` the reason it
    failed; ``summary`` the command line's one-line summary of a written file; ``seconds``
    from reading the input to the published outputs, on the worker.
    """

    name: str
    status: Status
    path: Path | None = None
    error: str | None = None
    summary: str | None = None
    seconds: float = 0.0


def local_workers() -> int:
    """Workers of ``--dask local``: one single-threaded process per CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def connect(address: str, *, n_workers: int | None = None) -> Client:
    """A client of a new LocalCluster (``address`` ``"local"``: ``n_workers`` processes of one
    thread each, default :func:`local_workers`), or of the scheduler at ``address``
    (``tcp://host:8786``, started with ``dask scheduler`` and ``dask worker``).

    Each worker of a LocalCluster runs torch on one thread (dask's nanny sets
    ``OMP_NUM_THREADS=1``), so the workers do not compete for the cores.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError as error:
        raise ImportError(
            "scaling out needs dask.distributed: "
            'pip install "napari-unsupervised-segmentation[distributed]"'
        ) from error
    if address.strip().lower() != "local":
        return Client(address)
    cluster = LocalCluster(
        n_workers=n_workers or local_workers(),
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",  # any free port
    )
    return Client(cluster)


def close(client: Client) -> None:
    """Close ``client``, and the LocalCluster it started (a remote scheduler keeps running)."""
    from distributed import LocalCluster

    cluster = client.cluster
    client.close()
    if isinstance(cluster, LocalCluster):
        cluster.close()


def apply_model(
    images: Iterable[str | os.PathLike[str]],
    model: SegmentationModel | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    client: Client | None = None,
    overwrite: bool = False,
    options: Sequence[str] = (),
    progress: Callable[[FileResult], None] | None = None,
) -> list[FileResult]:
    """Label every image file with ``model`` (a :class:`SegmentationModel` or a saved
    model's path) into ``out_dir``, as ``unsupervised-segmentation FILES --model MODEL
    --out OUT_DIR OPTIONS`` does; on ``client``'s cluster, or in this process when None.

    ``options`` are further command line flags (``["--planes", "--measure"]``). Outputs
    already complete are skipped unless ``overwrite``. ``progress`` is called with each
    :class:`FileResult` as it comes in. Returns one result per image, in the order given.
    """
    from . import cli
    from .core import load_model

    if isinstance(model, str | os.PathLike):
        model = load_model(model)
    files = [os.fspath(Path(image).absolute()) for image in images]
    flags = [*files, "--out", os.fspath(Path(out_dir).absolute()), "--quiet", *options]
    parser = cli.build_parser()
    args = parser.parse_args([*flags, *(["--overwrite"] if overwrite else [])])
    args.model = Path("<in memory>")  # labels with the model given, as --model does
    args.loaded_model = model
    params = cli.params_from_args(args)
    args.objects = cli.object_settings(args, params)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    jobs = [(name, source) for name, source in input_sources(args)]
    return run(jobs, args, params, client=client, progress=progress)


def input_sources(args: argparse.Namespace) -> list[tuple[str, tuple[str, str]]]:
    """(output name, source) of every sample and file of the command line, named as the
    command line names them; a source is ``("sample", NAME)`` or ``("file", ABSOLUTE_PATH)``,
    read on the worker."""
    from . import cli
    from .io._label_tiff import _file_stem

    named: list[tuple[str, Any]] = [(sample, ("sample", sample)) for sample in args.sample]
    named += [
        (_file_stem(path), ("file", os.fspath(Path(path).absolute()))) for path in args.images
    ]
    return cli._unique_names(named)


def run(
    jobs: Sequence[tuple[str, tuple[str, str]]],
    args: argparse.Namespace,
    params: SegmentationParams,
    *,
    client: Client | None = None,
    progress: Callable[[FileResult], None] | None = None,
) -> list[FileResult]:
    """Label every ``(name, source)`` of ``jobs`` as the command line ``args`` say, one task
    per input on ``client`` (in this process when None); ``progress`` gets each result as
    its task completes. Returns the results in the order of ``jobs``."""
    model = getattr(args, "loaded_model", None)
    shipped = copy.copy(args)
    shipped.loaded_model = None  # the model travels on its own, once per worker
    shipped.quiet = True  # no progress bars on the workers
    shipped.out = Path(args.out).absolute()
    results: dict[int, FileResult] = {}

    def done(index: int, result: FileResult) -> None:
        results[index] = result
        if progress is not None:
            progress(result)

    if client is None:
        for index, (name, source) in enumerate(jobs):
            done(index, label_file(name, source, shipped, params, model))
        return [results[index] for index in range(len(jobs))]

    from distributed import as_completed

    sent_model = None if model is None else client.scatter(model, broadcast=True, hash=False)
    futures = {
        client.submit(
            label_file, name, source, shipped, params, sent_model, pure=False, key=_key(name)
        ): index
        for index, (name, source) in enumerate(jobs)
    }
    try:
        for future in as_completed(futures):
            index = futures[future]
            try:
                result = future.result()
            except Exception as error:  # lost: its workers died too often (KilledWorker)
                reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
                result = FileResult(jobs[index][0], "failed", error=reason)
            done(index, result)
    finally:
        client.cancel([*futures, *([sent_model] if sent_model is not None else [])])
    return [results[index] for index in range(len(jobs))]


def _key(name: str) -> str:
    """A task key that names the input (dask's dashboard and logs show it)."""
    import uuid

    return f"label-{name}-{uuid.uuid4().hex[:8]}"


def output_paths(args: argparse.Namespace, name: str) -> list[Path]:
    """Every output the command line writes for the input ``name``: the labels, and with
    ``--measure`` the measurements."""
    from . import cli

    labels = cli.output_path(Path(args.out), name)
    if getattr(args, "measure", False):
        return [labels, cli.measurements_path(labels)]
    return [labels]


def is_complete(path: Path) -> bool:
    """Whether an output was published whole: files are published atomically, so one that
    is there is complete."""
    return path.is_file()


def label_file(
    name: str,
    source: tuple[str, str],
    args: argparse.Namespace,
    params: SegmentationParams,
    model: SegmentationModel | None = None,
) -> FileResult:
    """The task of one input (run on a worker, or in this process): skip it when its
    outputs are complete (unless ``--overwrite``), else read, label and publish it as
    :func:`~napari_unsupervised_segmentation.cli.segment_to_file` does. Any error is
    returned as a failed result with its reason, not raised (raising would only repeat it).

    Outputs left by an attempt of this task on a worker that was lost (the labels written,
    the measurements not yet) are complete files, and are replaced; outputs that another
    run publishes meanwhile are kept (``skipped``).
    """
    from . import cli

    started = time.perf_counter()
    args = copy.copy(args)
    args.loaded_model = model
    targets = output_paths(args, name)
    if not args.overwrite:
        complete = [is_complete(target) for target in targets]
        if all(complete):
            return FileResult(name, "skipped", targets[0], summary="complete, kept")
        if any(complete):
            args.overwrite = True
    try:
        image, letters, read = _read(source)
        calibration = read if args.calibration else cli.UNCALIBRATED
        written = cli.segment_to_file(
            name, image, Path(args.out), args, params, letters, calibration, voxel_sizes=read
        )
    except FileExistsError:
        return FileResult(name, "skipped", targets[0], summary="appeared meanwhile, kept")
    except Exception as error:  # one bad file must not stop the others
        return FileResult(name, "failed", error=str(error) or type(error).__name__)
    seconds = time.perf_counter() - started
    summary = cli.summary_line(name, written, written.path, seconds)
    return FileResult(name, "written", written.path, summary=summary, seconds=seconds)


def _read(source: tuple[str, str]) -> tuple[Any, str | None, Any]:
    """An input's pixels, axis letters and calibration, as the command line reads them."""
    from . import cli

    kind, where = source
    if kind == "sample":
        from ._napari.sample_data import load_sample

        return (*load_sample(where), cli.UNCALIBRATED)
    return cli.read_image(Path(where))


def predict_tiles(
    image: str | os.PathLike[str],
    model: SegmentationModel,
    out: str | os.PathLike[str],
    *,
    client: Client | None = None,
    channel_axis: int | None = None,
    rgb: bool | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Label one 2D image too large for memory tile by tile, one task per tile: ``image`` is
    the path of a zarr array (rows, columns and, on ``channel_axis``, channels), ``out`` the
    path of a zarr array of its rows and columns to fill (for instance the level 0 of an
    OME-Zarr labels output). A tile is a chunk of ``out`` (so tasks write disjoint chunks)
    read with the model's halo around it: the labels are those of ``model.predict`` on the
    whole image, with the memory of one tile per task. ``progress(done, total)`` is called
    as tiles complete; on ``client``'s cluster, or in this process when None.

    A model that stretches each image's contrast is given the whole image's ranges first
    (measured tile by tile here), so that every tile is scaled alike.
    """
    import dataclasses

    import zarr

    from .core.fitted import _Plane, _plane_ranges
    from .core.normalize import image_layout

    source = zarr.open_array(os.fspath(image), mode="r")
    target = zarr.open_array(os.fspath(out), mode="r")
    if channel_axis is not None:
        channel_axis = channel_axis % source.ndim
    spatial = [axis for axis in range(source.ndim) if axis != channel_axis]
    if len(spatial) != 2:
        raise ValueError(f"tiles of a 2D image; the image has shape {source.shape}")
    height, width = (source.shape[axis] for axis in spatial)
    if tuple(target.shape) != (height, width):
        raise ValueError(f"out has shape {target.shape}; the labels have {(height, width)}")
    rows, cols = target.chunks
    if model.settings.stretch_contrast:
        plane = _Plane(source, {}, channel_axis)
        layout_axis = None if plane.n_channels is None else -1
        is_rgb = model._layout_as_trained(
            lambda colour: image_layout(plane.shape, plane.dtype, layout_axis, colour), rgb
        ).is_rgb
        ranges = _plane_ranges(plane, is_rgb, (rows, cols), stretch=True)
        settings = model.settings.replace(stretch_contrast=False)
        model = dataclasses.replace(model, ranges=ranges, settings=settings)
    corners = [(top, left) for top in range(0, height, rows) for left in range(0, width, cols)]
    where = (os.fspath(Path(image).absolute()), os.fspath(Path(out).absolute()))
    if client is None:
        for done, corner in enumerate(corners, start=1):
            label_tile(*where, corner, (rows, cols), model, channel_axis, rgb)
            if progress is not None:
                progress(done, len(corners))
        return
    from distributed import as_completed

    sent = client.scatter(model, broadcast=True, hash=False)
    futures = [
        client.submit(label_tile, *where, corner, (rows, cols), sent, channel_axis, rgb, pure=False)
        for corner in corners
    ]
    try:
        for done, future in enumerate(as_completed(futures), start=1):
            future.result()  # a tile that fails stops the image: its labels would be holes
            if progress is not None:
                progress(done, len(corners))
    finally:
        client.cancel([*futures, sent])


def label_tile(
    image: str,
    out: str,
    corner: tuple[int, int],
    tile: tuple[int, int],
    model: SegmentationModel,
    channel_axis: int | None,
    rgb: bool | None,
) -> None:
    """The task of one tile of :func:`predict_tiles`: read it with the model's halo from the
    zarr array ``image``, label it and write it into its chunk of the zarr array ``out``
    (written whole by zarr; a retry writes the same labels again)."""
    import zarr

    source = zarr.open_array(image, mode="r")
    target = zarr.open_array(out, mode="r+")
    height, width = target.shape
    top, left = corner
    halo = model.halo
    y0, x0 = max(top - halo, 0), max(left - halo, 0)
    y1, x1 = min(top + tile[0] + halo, height), min(left + tile[1] + halo, width)
    window: list[slice] = [slice(None)] * source.ndim
    spatial = [axis for axis in range(source.ndim) if axis != channel_axis]
    window[spatial[0]], window[spatial[1]] = slice(y0, y1), slice(x0, x1)
    block = source[tuple(window)]
    labels = model.predict(block, channel_axis=channel_axis, rgb=rgb)  # in its own tiles
    bottom, right = min(top + tile[0], height), min(left + tile[1], width)
    target[top:bottom, left:right] = labels[top - y0 : bottom - y0, left - x0 : right - x0]
