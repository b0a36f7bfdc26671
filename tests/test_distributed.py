"""Labelling files on a real dask.distributed LocalCluster (worker processes): same outputs as
one process, failures reported, reruns resume, a killed worker's files redone once."""

import os
import signal
import threading
import time

import numpy as np
import pytest
import tifffile
import torch

pytest.importorskip("distributed")

from napari_unsupervised_segmentation import distributed as scale  # noqa: E402
from napari_unsupervised_segmentation import fit  # noqa: E402
from napari_unsupervised_segmentation.cli import main  # noqa: E402
from napari_unsupervised_segmentation.core.params import SegmentationParams  # noqa: E402

TINY = SegmentationParams(max_iter=4, min_classes=0, n_superpixels=40, max_classes=6)


def _image(seed: int, shape=(48, 56)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[0], : shape[1]]
    wave = np.sin(x / (4 + seed % 5)) + np.cos(y / 6)
    return (wave * 60 + 128 + rng.normal(0, 6, shape)).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A saved tiny model and 8 small image files."""
    folder = tmp_path_factory.mktemp("inputs")
    paths = []
    for index in range(8):
        paths.append(folder / f"image{index}.tif")
        tifffile.imwrite(paths[-1], _image(index))
    model = fit(_image(0), TINY).save(folder / "tiny.model")
    return paths, model


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of two single-threaded worker processes."""
    client = scale.connect("local", n_workers=2)
    yield client
    scale.close(client)


def _plain(files, tmp_path):
    """The outputs of the command line in one process."""
    paths, model = files
    out = tmp_path / "plain"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as on each worker: a pixel's sums in the same order
    try:
        assert main([*map(str, paths), "--model", str(model), "--out", str(out), "--quiet"]) == 0
    finally:
        torch.set_num_threads(threads)
    return {path.name: path.read_bytes() for path in sorted(out.iterdir())}


def test_apply_model_on_a_cluster_writes_what_one_process_writes(files, client, tmp_path):
    paths, model = files
    broken = tmp_path / "broken.tif"
    broken.write_text("not an image")
    seen = []
    out = tmp_path / "out"
    results = scale.apply_model([*paths, broken], model, out, client=client, progress=seen.append)
    assert [r.status for r in results] == ["written"] * len(paths) + ["failed"]
    assert "broken.tif is a damaged TIFF" in results[-1].error
    assert sorted(r.name for r in seen) == sorted(r.name for r in results)
    written = {path.name: path.read_bytes() for path in sorted(out.iterdir())}
    assert written == _plain(files, tmp_path)
    # a rerun resumes: complete outputs are kept, not written again
    again = scale.apply_model(paths, model, out, client=client)
    assert {r.status for r in again} == {"skipped"}


def test_the_model_is_scattered_once_not_sent_per_task(files, client, tmp_path, monkeypatch):
    paths, model = files
    scattered, submitted = [], []
    real_scatter, real_submit = client.scatter, client.submit

    def scatter(data, **options):
        scattered.append((type(data).__name__, options))
        return real_scatter(data, **options)

    def submit(function, *arguments, **options):
        submitted.append(arguments)
        return real_submit(function, *arguments, **options)

    monkeypatch.setattr(client, "scatter", scatter)
    monkeypatch.setattr(client, "submit", submit)
    scale.apply_model(paths[:3], model, tmp_path / "out", client=client)
    assert scattered == [("SegmentationModel", {"broadcast": True, "hash": False})]
    assert len(submitted) == 3
    for arguments in submitted:
        assert not any(type(a).__name__ == "SegmentationModel" for a in arguments)
        assert arguments[2].loaded_model is None


def test_a_killed_worker_has_its_files_labelled_elsewhere_once(files, client, tmp_path):
    paths, model = files
    many = paths * 4  # 32 files, each name once: copies in their own folders
    inputs = []
    for index, path in enumerate(many):
        copy = tmp_path / "in" / f"copy{index:02d}.tif"
        copy.parent.mkdir(exist_ok=True)
        copy.write_bytes(path.read_bytes())
        inputs.append(copy)
    pids = client.run(os.getpid)
    killed = []

    def kill_a_busy_worker():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not killed:
            for address, keys in client.processing().items():
                if keys and address in pids:
                    os.kill(pids[address], signal.SIGKILL)
                    killed.append(address)
                    return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_a_busy_worker)
    out = tmp_path / "out"
    killer.start()
    results = scale.apply_model(inputs, model, out, client=client)
    killer.join()
    assert killed, "no worker was busy"
    assert {r.status for r in results} <= {"written", "skipped"}
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{p.stem}_labels.tif" for p in inputs)  # no temporaries left
    from napari_unsupervised_segmentation import load_model
    from napari_unsupervised_segmentation.io import read_label_tiff

    model_labels = load_model(model)
    for path in inputs:
        expected = model_labels.predict(tifffile.imread(path))
        labels, _ = read_label_tiff(out / f"{path.stem}_labels.tif")
        np.testing.assert_array_equal(labels, expected)
    client.wait_for_workers(2, timeout=30)  # the nanny restarts the killed worker


def test_cli_dask_local_labels_files_and_a_rerun_skips_them(files, tmp_path, capsys):
    paths, model = files
    plain = _plain(files, tmp_path)
    capsys.readouterr()
    out = tmp_path / "out"
    argv = [*map(str, paths[:2]), "--model", str(model), "--out", str(out), "--quiet"]
    assert main([*argv, "--dask", "local"]) == 0
    printed = capsys.readouterr().out
    assert "image0: " in printed and "no training" in printed
    written = {path.name: path.read_bytes() for path in sorted(out.iterdir())}
    assert written == {name: plain[name] for name in ("image0_labels.tif", "image1_labels.tif")}
    assert main([*argv, "--dask", "local"]) == 0  # complete outputs: kept, not refused
    again = capsys.readouterr().out
    assert again.count("complete, kept") == 2 and "no training" not in again


def test_cli_dask_refuses_one_model(tmp_path, capsys):
    image = tmp_path / "a.tif"
    tifffile.imwrite(image, _image(1))
    with pytest.raises(SystemExit):
        main([str(image), "--out", str(tmp_path / "o"), "--one-model", "--dask", "local"])
    assert "--dask labels each file on its own" in capsys.readouterr().err


def test_the_package_and_the_command_line_do_not_import_dask_distributed():
    import subprocess
    import sys

    code = (
        "import sys, napari_unsupervised_segmentation, napari_unsupervised_segmentation.cli\n"
        "napari_unsupervised_segmentation.cli.build_parser()\n"
        "assert 'distributed' not in sys.modules, 'distributed imported'\n"
        "assert 'napari_unsupervised_segmentation.distributed' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ)


@pytest.mark.parametrize("stretch", [False, True])
def test_one_large_image_is_labelled_tile_by_tile_on_the_cluster(client, tmp_path, stretch):
    import zarr

    from napari_unsupervised_segmentation.core.labels import smallest_unsigned_dtype

    image = _image(3, shape=(150, 230))
    model = fit(image[:64, :64], TINY.replace(stretch_contrast=stretch))
    source = zarr.create_array(tmp_path / "image.zarr", shape=image.shape, chunks=(50, 50),
                               dtype=image.dtype)  # fmt: skip
    source[:] = image
    dtype = smallest_unsigned_dtype(model.n_classes)
    zarr.create_array(tmp_path / "labels.zarr", shape=image.shape, chunks=(64, 96), dtype=dtype)
    seen = []
    scale.predict_tiles(tmp_path / "image.zarr", model, tmp_path / "labels.zarr", client=client,
                        progress=lambda done, total: seen.append((done, total)))  # fmt: skip
    assert seen[-1] == (9, 9)
    labels = zarr.open_array(tmp_path / "labels.zarr", mode="r")[:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as on each worker
    try:
        np.testing.assert_array_equal(labels, model.predict(image))
    finally:
        torch.set_num_threads(threads)
