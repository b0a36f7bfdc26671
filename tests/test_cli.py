"""The command line: files and samples in, label TIFFs out, failures reported and skipped."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_unsupervised_segmentation import segment
from napari_unsupervised_segmentation.cli import (
    build_parser,
    image_axes,
    main,
    params_from_args,
)
from napari_unsupervised_segmentation.io import read_label_tiff

FAST = ["--max-iter", "3", "--max-classes", "8", "--n-superpixels", "40", "--device", "cpu"]


def test_segments_files_into_label_tiffs_matching_the_api(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    gray = np.random.default_rng(1).integers(0, 4000, (20, 30), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "rgb.tif", image)
    tifffile.imwrite(tmp_path / "gray.tif", gray)
    out = tmp_path / "out"
    code = main([str(tmp_path / "rgb.tif"), str(tmp_path / "gray.tif"), "--out", str(out), *FAST])
    assert code == 0
    labels, _ = read_label_tiff(out / "rgb_labels.tif")
    expected = segment(
        image, channel_axis=-1, max_iter=3, max_classes=8, n_superpixels=40, device="cpu"
    )
    np.testing.assert_array_equal(labels, expected)
    assert read_label_tiff(out / "gray_labels.tif")[0].shape == (20, 30)


@pytest.fixture
def prepared_images(monkeypatch):
    """Every image the engine prepares, as (is colour, channel count), in order."""
    from napari_unsupervised_segmentation.core import normalize

    seen = []
    original = normalize.prepare_image

    def spy(image, channel_axis=None, rgb=None, **options):
        prepared = original(image, channel_axis, rgb, **options)
        seen.append((prepared.is_rgb, prepared.channels.shape[-1]))
        return prepared

    monkeypatch.setattr("napari_unsupervised_segmentation.core.train.prepare_image", spy)
    return seen


def test_colour_is_told_by_the_tiff_axes_or_the_rgb_flag(tmp_path, prepared_images, capsys):
    seen = prepared_images
    rng = np.random.default_rng(0)
    tifffile.imwrite(tmp_path / "rgb.tif", rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    stains = rng.integers(0, 255, (3, 20, 30), dtype=np.uint8)
    tifffile.imwrite(
        tmp_path / "cyx.tif", stains, photometric="minisblack", metadata={"axes": "CYX"}
    )
    planar = np.moveaxis(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8), -1, 0)
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    tifffile.imwrite(
        tmp_path / "yxc.tif",
        np.moveaxis(stains, 0, -1),
        photometric="minisblack",
        metadata={"axes": "YXC"},
    )
    names = ("rgb.tif", "cyx.tif", "planar.tif", "yxc.tif")
    files = [str(tmp_path / name) for name in names]
    assert main([*files, "--out", str(tmp_path / "out"), "--quiet", *FAST]) == 0
    # (H, W, 3) is RGB; a C axis holds stains, also when last; planar RGB (S, Y, X) is RGB
    assert [is_rgb for is_rgb, _ in seen] == [True, False, True, False]
    # planar samples are what tifffile makes of any (3, H, W) array: said, not silent
    notes = [line for line in capsys.readouterr().err.splitlines() if "note:" in line]
    assert len(notes) == 1 and "planar stores its 3 planes" in notes[0]
    assert "--no-rgb" in notes[0] and "--channel-axis none --planes" in notes[0]
    seen.clear()
    args = ["--out", str(tmp_path / "again"), "--quiet", *FAST]
    assert main([files[0], "--no-rgb", *args]) == 0
    assert main([files[1], "--rgb", *args]) == 0
    assert [is_rgb for is_rgb, _ in seen] == [False, True]


def test_bad_file_is_reported_and_skipped_and_exit_code_says_so(tmp_path, capsys):
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, np.random.default_rng(0).integers(0, 255, (16, 16), dtype=np.uint8))
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"not a tiff at all")
    damaged = tmp_path / "damaged.tif"
    damaged.write_bytes(b"II*\x00garbage")  # a TIFF header pointing nowhere
    nan_image = tmp_path / "nan.tif"
    tifffile.imwrite(nan_image, np.full((16, 16), np.nan, np.float32))
    out = tmp_path / "out"
    inputs = [str(broken), str(damaged), str(nan_image), str(good)]
    code = main([*inputs, "--out", str(out), "--quiet", *FAST])
    assert code == 1
    assert (out / "good_labels.tif").exists()
    assert not (out / "broken_labels.tif").exists()
    errors = capsys.readouterr().err
    assert "skipped broken" in errors and "skipped nan" in errors and "NaN" in errors
    assert "skipped damaged: damaged.tif is a damaged TIFF" in errors
    assert "3 of 4 image(s) failed" in errors


def test_sample_runs_without_an_input_file(tmp_path):
    out = tmp_path / "out"
    assert main(["--sample", "coffee", "--out", str(out), "--quiet", *FAST, "--max-iter", "1"]) == 0
    labels, _ = read_label_tiff(out / "coffee_labels.tif")
    assert labels.shape == (400, 600)
    stack = ["--sample", "stack", "--out", str(out), "--quiet", *FAST, "--max-iter", "1"]
    assert main(stack) == 1  # a z-stack: refused without --planes
    assert main([*stack, "--planes"]) == 0
    labels, info = read_label_tiff(out / "stack_labels.tif")
    assert labels.shape == (6, 160, 160) and info["axes"] == "ZYX"


def test_unknown_sample_or_channel_axis_is_a_usage_error(tmp_path, capsys):
    for bad in (["--sample", "nope"], ["--sample", "coffee", "--channel-axis", "c"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*bad, "--out", str(tmp_path), "--quiet"])
        assert exit_info.value.code == 2
    assert "auto, none or an axis number" in capsys.readouterr().err


def test_every_parameter_is_a_flag_and_unset_flags_keep_the_preset():
    args = build_parser().parse_args(["--out", "x", "--preset", "paper", "--lr", "0.05"])
    params = params_from_args(args)
    assert params.lr == 0.05 and params.max_iter == 500
    args = build_parser().parse_args(
        ["--out", "x", "--preset", "paper", "--seed", "none", "--label-by", "segment"]
    )
    params = params_from_args(args)
    assert params.seed is None and params.label_by == "segment"
    args = build_parser().parse_args(["--out", "x", "--merge", "colour", "--cut-scale", "250"])
    params = params_from_args(args)
    # the colour merge's own threshold; the texture merge's settings are dropped
    assert (params.merge, params.cut_scale, params.merge_threshold) == ("colour", 250.0, 2.0)
    assert params.spectral_weight is None


def test_a_flag_of_an_option_not_chosen_exits_naming_the_option(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--sample", "coffee", "--out", str(tmp_path), "--merge", "colour",
              "--spectral-weight", "0.2"])  # fmt: skip
    assert exit_info.value.code == 2
    assert "spectral_weight applies only with merge='texture'" in capsys.readouterr().err


def test_invalid_parameter_exits_with_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--sample", "coffee", "--out", str(tmp_path), "--max-iter", "0"])
    assert exit_info.value.code == 2
    assert "max_iter" in capsys.readouterr().err


def test_channel_and_stack_axes():
    assert image_axes((4, 4), "auto") == (None, ())
    assert image_axes((4, 4, 3), "auto") == (2, ())
    assert image_axes((2, 4, 4), 0) == (0, ())
    assert image_axes((5, 2, 4, 4), "auto", "ZCYX") == (1, (0,))  # the TIFF says C
    assert image_axes((3, 5, 4, 4, 3), "auto", "TZYXS") == (4, (0, 1))  # RGB samples
    assert image_axes((5, 4, 4), None) == (None, (0,))
    with pytest.raises(ValueError, match="--channel-axis"):
        image_axes((5, 6, 7), "auto")
    with pytest.raises(ValueError, match="out of range"):
        image_axes((5, 6, 7), 3)
    assert image_axes((2, 3, 4, 8, 8), "auto", "CZTYX") == (0, (2, 1))  # time before depth
    with pytest.raises(ValueError, match="cannot tell"):  # tifffile's Q: an unknown axis
        image_axes((24, 32, 5), "auto", "QYX")
    with pytest.raises(ValueError, match="both channels"):
        image_axes((2, 8, 8, 3), "auto", "CYXS")
    assert image_axes((2, 8, 8, 3), 0, "CYXS") == (0, (3,))  # as advised: the plane stays Y, X
    # a plain TIFF's colour stack: Q is unknown, but S, Y and X are what the file says
    assert image_axes((2, 8, 8, 3), "auto", "QYXS") == (3, (0,))
    assert image_axes((2, 8, 8, 3), None, "QYXS") == (None, (0, 3))  # planes stay Y, X


def test_stacks_are_refused_or_segmented_plane_by_plane(tmp_path, capsys):
    rng = np.random.default_rng(0)
    zyx = rng.integers(0, 4000, (3, 20, 24), dtype=np.uint16)
    zyx[:, 5:15, 6:18] += 3000
    tifffile.imwrite(tmp_path / "stack.ome.tif", zyx, metadata={"axes": "ZYX"})
    czyx = rng.integers(0, 255, (2, 2, 20, 24), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "two.tif", np.moveaxis(czyx, 0, 1), imagej=True,
                     metadata={"axes": "ZCYX"})  # fmt: skip
    out = tmp_path / "out"
    files = [str(tmp_path / "stack.ome.tif"), str(tmp_path / "two.tif")]
    assert main([*files, "--out", str(out), "--quiet", *FAST]) == 1
    errors = capsys.readouterr().err
    assert "shape (3, 20, 24) is a stack of 3 planes along z; pass --planes" in errors
    assert "shape (2, 2, 20, 24) is a stack of 2 planes along z; pass --planes" in errors
    assert not out.exists() or not list(out.iterdir())

    assert main([*files, "--out", str(out), "--quiet", *FAST, "--planes"]) == 0
    settings = {"max_iter": 3, "max_classes": 8, "n_superpixels": 40, "device": "cpu"}
    labels, info = read_label_tiff(out / "stack_labels.tif")  # ".ome" is not kept
    assert labels.shape == (3, 20, 24) and info["axes"] == "ZYX"
    for z in range(3):
        np.testing.assert_array_equal(labels[z], segment(zyx[z], **settings))
    labels, info = read_label_tiff(out / "two_labels.tif")
    assert labels.shape == (2, 20, 24) and info["axes"] == "ZYX"  # channels segmented together
    np.testing.assert_array_equal(labels[1], segment(czyx[:, 1], channel_axis=0, **settings))


def test_calibration_gives_the_labels_the_pixel_size_and_unit_of_the_image(tmp_path, capsys):
    # a calibrated Fiji stack and an OME-TIFF: the labels measure the same in Fiji
    rng = np.random.default_rng(0)
    zyx = rng.integers(0, 4000, (2, 20, 24), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "fiji.tif", zyx, imagej=True, resolution=(5.0, 5.0),
                     metadata={"axes": "ZYX", "spacing": 1.5, "unit": "um"})  # fmt: skip
    tifffile.imwrite(tmp_path / "ome.ome.tif", zyx[0], ome=True,
                     metadata={"axes": "YX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.5,
                               "PhysicalSizeXUnit": "nm", "PhysicalSizeYUnit": "nm"})  # fmt: skip
    tifffile.imwrite(tmp_path / "plain.tif", zyx[0])
    tifffile.imwrite(tmp_path / "inch.tif", zyx[0], imagej=True, resolution=(72.0, 72.0),
                     metadata={"axes": "YX", "unit": "inch"})  # fmt: skip
    names = ("fiji.tif", "ome.ome.tif", "plain.tif", "inch.tif")
    files = [str(tmp_path / name) for name in names]
    # without the flag: pixel size 1, as napari's own TIFF reader opens the images
    assert main([*files, "--out", str(tmp_path / "o"), "--quiet", "--planes", *FAST]) == 0
    _, fiji = read_label_tiff(tmp_path / "o" / "fiji_labels.tif")
    assert fiji["scale"] == (1.0, 1.0, 1.0) and fiji["units"] is None
    assert "note" not in capsys.readouterr().err
    out = tmp_path / "out"
    assert main([*files, "--out", str(out), "--quiet", "--planes", "--calibration", *FAST]) == 0
    assert "inch: its pixel size is in no length unit" in capsys.readouterr().err
    _, fiji = read_label_tiff(out / "fiji_labels.tif")
    assert fiji["axes"] == "ZYX" and fiji["units"] == "micrometer"
    np.testing.assert_allclose(fiji["scale"], (1.5, 0.2, 0.2))
    _, ome = read_label_tiff(out / "ome_labels.tif")
    assert ome["units"] == "nanometer"
    np.testing.assert_allclose(ome["scale"], (0.5, 0.25))
    for uncalibrated in ("plain", "inch"):  # no size, or sizes in a unit not supported
        _, plain = read_label_tiff(out / f"{uncalibrated}_labels.tif")
        assert plain["scale"] == (1.0, 1.0) and plain["units"] is None


def test_module_entry_point_prints_help():
    result = subprocess.run(
        [sys.executable, "-m", "napari_unsupervised_segmentation", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--n-superpixels" in result.stdout and "--sample" in result.stdout


def test_files_with_the_same_name_do_not_overwrite_each_other(tmp_path):
    for folder, value in (("a", 10), ("b", 200)):
        (tmp_path / folder).mkdir()
        image = np.full((12, 12), value, np.uint8)
        image[:, 6:] = 255 - value
        tifffile.imwrite(tmp_path / folder / "cells.tif", image)
    out = tmp_path / "out"
    files = [str(tmp_path / "a" / "cells.tif"), str(tmp_path / "b" / "cells.tif")]
    assert main([*files, "--out", str(out), "--quiet", *FAST]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["cells_2_labels.tif", "cells_labels.tif"]


def test_generated_names_never_collide_with_given_ones():
    from napari_unsupervised_segmentation.cli import _unique_names

    names = [name for name, _ in _unique_names([("x", 0), ("X", 1), ("x_2", 2), ("x", 3)])]
    assert names == ["x", "X_2", "x_2_2", "x_3"]
    assert len({n.lower() for n in names}) == len(names)


def test_out_that_is_a_file_is_a_usage_error(tmp_path, capsys):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        main(["--sample", "coffee", "--out", str(not_a_folder)])
    assert exit_info.value.code == 2
    assert f"--out {not_a_folder} is a file, not a folder" in capsys.readouterr().err


def test_existing_outputs_and_inputs_are_never_overwritten(tmp_path, capsys):
    image = np.random.default_rng(0).integers(0, 255, (16, 16), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", image)
    by_hand = np.full((16, 16), 7, np.uint8)
    tifffile.imwrite(tmp_path / "a_labels.tif", by_hand)  # an input, and a.tif's output name
    inputs = [str(tmp_path / "a.tif"), str(tmp_path / "a_labels.tif")]
    for extra in ([], ["--overwrite"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*inputs, "--out", str(tmp_path), "--quiet", *FAST, *extra])
        assert exit_info.value.code == 2
        assert "a_labels.tif is one of the input images" in capsys.readouterr().err
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "a_labels.tif"), by_hand)
    assert not (tmp_path / "a_labels_labels.tif").exists()  # refused before any work

    out = tmp_path / "out"
    assert main([inputs[0], "--out", str(out), "--quiet", *FAST]) == 0
    first = (out / "a_labels.tif").read_bytes()
    again = [inputs[0], "--out", str(out), "--quiet", *FAST, "--preset", "paper"]
    with pytest.raises(SystemExit):
        main(again)
    assert "exists (pass --overwrite" in capsys.readouterr().err
    assert (out / "a_labels.tif").read_bytes() == first
    assert main([*again, "--overwrite"]) == 0
    assert (out / "a_labels.tif").read_bytes() != first
    expected = segment(image, "paper", max_iter=3, max_classes=8, n_superpixels=40, device="cpu")
    np.testing.assert_array_equal(read_label_tiff(out / "a_labels.tif")[0], expected)


def test_extra_samples_of_a_grayscale_tiff_are_channels_not_colour(tmp_path, prepared_images):
    seen = prepared_images
    rng = np.random.default_rng(0)
    for n in (2, 4):  # tifffile names them S, as microscopes' multi-sample files
        data = rng.integers(0, 4000, (16, 18, n), dtype=np.uint16)
        tifffile.imwrite(
            tmp_path / f"s{n}.tif", data, photometric="minisblack", planarconfig="contig"
        )
    rgba = rng.integers(0, 4000, (16, 18, 4), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb")  # 4th: alpha
    files = [str(tmp_path / name) for name in ("s2.tif", "s4.tif", "rgba.tif")]
    assert main([*files, "--out", str(tmp_path / "out"), "--quiet", *FAST]) == 0
    assert seen == [(False, 2), (False, 4), (True, 3)]


def test_colour_stack_of_a_plain_tiff_is_segmented_plane_by_plane(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (2, 20, 24, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "frames.tif", frames)  # axes QYXS: the Q axis is unnamed
    out = tmp_path / "out"
    assert (
        main([str(tmp_path / "frames.tif"), "--out", str(out), "--quiet", "--planes", *FAST]) == 0
    )
    labels, _ = read_label_tiff(out / "frames_labels.tif")
    settings = {"max_iter": 3, "max_classes": 8, "n_superpixels": 40, "device": "cpu"}
    assert labels.shape == (2, 20, 24)
    np.testing.assert_array_equal(labels[1], segment(frames[1], channel_axis=-1, **settings))


def test_rgb_flag_without_a_colour_axis_is_reported_in_the_flags_words(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "gray.tif", np.zeros((16, 16), np.uint8))
    code = main([str(tmp_path / "gray.tif"), "--rgb", "--out", str(tmp_path / "o"), *FAST])
    assert code == 1
    error = capsys.readouterr().err
    assert "--rgb needs a channel axis of 3 or 4 entries" in error and "leave --rgb out" in error


def test_a_tiff_cut_off_is_reported_as_damaged_not_read_in_part(tmp_path, capsys):
    rng = np.random.default_rng(0)
    whole = tmp_path / "whole.tif"
    tifffile.imwrite(whole, rng.integers(0, 255, (64, 64), dtype=np.uint8))
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, rng.integers(0, 255, (6, 64, 64), dtype=np.uint8), imagej=True,
                     metadata={"axes": "ZYX"})  # fmt: skip
    cut = {  # interrupted copies
        "data": whole.read_bytes()[:2000],
        "structure": whole.read_bytes()[:100],
        "stack": stack.read_bytes()[: stack.stat().st_size * 3 // 10],  # tifffile: 1st page
    }
    for name, content in cut.items():
        (tmp_path / f"{name}.tif").write_bytes(content)
    files = [str(tmp_path / f"{name}.tif") for name in cut]
    assert main([*files, "--planes", "--out", str(tmp_path / "o"), "--quiet", *FAST]) == 1
    errors = capsys.readouterr().err
    for name in cut:
        assert f"skipped {name}: {name}.tif is a damaged TIFF" in errors
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_a_tiff_compressed_beyond_tifffile_alone_asks_for_imagecodecs(tmp_path, capsys):
    import importlib.util

    from PIL import Image

    if importlib.util.find_spec("imagecodecs") is not None:
        pytest.skip("imagecodecs is installed: LZW files simply read")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(
        tmp_path / "lzw.tif", compression="tiff_lzw"
    )
    assert main([str(tmp_path / "lzw.tif"), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    error = capsys.readouterr().err
    assert "pip install imagecodecs" in error and "damaged" not in error


def test_only_rgb_samples_with_alpha_as_the_fourth_are_colour(tmp_path, prepared_images):
    rng = np.random.default_rng(0)
    rgbx = rng.integers(0, 4000, (16, 18, 4), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "rgbx.tif", rgbx, photometric="rgb", extrasamples=[0])
    pages = rng.integers(0, 4000, (16, 18, 3), dtype=np.uint16)  # 16 pages of 18 x 3: QYX
    tifffile.imwrite(tmp_path / "pages.tif", pages, photometric="minisblack")
    files = [str(tmp_path / name) for name in ("rgbx.tif", "pages.tif")]
    assert main([*files, "--out", str(tmp_path / "out"), "--quiet", *FAST]) == 0
    # the fourth sample is not alpha: four channels; three last in a TIFF that says no RGB
    assert prepared_images == [(False, 4), (False, 3)]


def test_pages_written_one_by_one_are_a_stack_not_their_first_page(tmp_path, capsys):
    frames = np.random.default_rng(0).integers(0, 255, (3, 20, 24), dtype=np.uint8)
    with tifffile.TiffWriter(tmp_path / "loop.tif") as tif:
        for frame in frames:  # three images ("series") of one shape, as a loop writes them
            tif.write(frame)
    out = tmp_path / "out"
    run = [str(tmp_path / "loop.tif"), "--out", str(out), "--quiet", *FAST]
    assert main(run) == 1  # pages or channels? as for any multi-page TIFF, the user says
    error = capsys.readouterr().err
    assert "holds 3 images of shape (20, 24); read as a stack along a first axis" in error
    assert "or --channel-axis none --planes for a grayscale stack" in error
    assert main([*run, "--channel-axis", "none", "--planes"]) == 0
    labels, _ = read_label_tiff(out / "loop_labels.tif")
    settings = {"max_iter": 3, "max_classes": 8, "n_superpixels": 40, "device": "cpu"}
    assert labels.shape == (3, 20, 24)
    np.testing.assert_array_equal(labels[2], segment(frames[2], **settings))


def test_a_bigtiff_suffix_is_read_as_a_tiff(tmp_path):
    two = np.random.default_rng(0).integers(0, 255, (20, 24, 2), dtype=np.uint8)
    tifffile.imwrite(  # two samples of a grayscale image: two stains
        tmp_path / "two.btf", two, bigtiff=True, photometric="minisblack", planarconfig="contig"
    )
    run = [str(tmp_path / "two.btf"), "--out", str(tmp_path), "--quiet", *FAST]
    assert main(run) == 0
    labels, _ = read_label_tiff(tmp_path / "two_labels.tif")
    settings = {"max_iter": 3, "max_classes": 8, "n_superpixels": 40, "device": "cpu"}
    np.testing.assert_array_equal(labels, segment(two, channel_axis=-1, rgb=False, **settings))


def test_of_images_of_different_shapes_the_first_is_segmented_with_a_note(tmp_path, capsys):
    image = np.random.default_rng(0).integers(0, 255, (20, 24), dtype=np.uint8)
    with tifffile.TiffWriter(tmp_path / "thumb.tif") as tif:
        tif.write(image)
        tif.write(image[::2, ::2])  # a thumbnail beside the image
    assert main([str(tmp_path / "thumb.tif"), "--out", str(tmp_path), "--quiet", *FAST]) == 0
    labels, _ = read_label_tiff(tmp_path / "thumb_labels.tif")
    assert labels.shape == (20, 24)
    error = capsys.readouterr().err
    assert "holds 2 images of different shapes or types; segmenting the first" in error


def test_grayscale_png_with_alpha_is_grayscale(tmp_path):
    from PIL import Image

    gray = np.random.default_rng(0).integers(0, 255, (20, 24), dtype=np.uint8)
    alpha = np.full_like(gray, 255)
    Image.fromarray(np.dstack([gray, alpha]), mode="LA").save(tmp_path / "la.png")
    assert main([str(tmp_path / "la.png"), "--out", str(tmp_path), "--quiet", *FAST]) == 0
    labels, _ = read_label_tiff(tmp_path / "la_labels.tif")
    settings = {"max_iter": 3, "max_classes": 8, "n_superpixels": 40, "device": "cpu"}
    np.testing.assert_array_equal(labels, segment(gray, **settings))


def test_a_damaged_png_is_reported_as_unreadable(tmp_path, capsys):
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    assert main([str(tmp_path / "broken.png"), "--out", str(tmp_path), "--quiet", *FAST]) == 1
    error = capsys.readouterr().err
    assert "broken.png could not be read as an image: damaged" in error
    assert "pip install" not in error  # imageio's advice to install plugins misleads here
    assert main([str(tmp_path / "missing.png"), "--out", str(tmp_path), "--quiet", *FAST]) == 1
    error = capsys.readouterr().err
    assert "No such file" in error and "could not be read" not in error


def test_seed_and_device_errors_are_usage_errors_in_the_flags_words(tmp_path, capsys):
    for bad, message in (
        (["--seed", "abc"], "--seed: expected an integer or none, got 'abc'"),
        (["--device", "cuda:99"], "--device: device 'cuda:99' is not available"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["--sample", "coffee", "--out", str(tmp_path), *bad])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_ctrl_c_stops_with_a_message_not_a_traceback(tmp_path, capsys, monkeypatch):
    from napari_unsupervised_segmentation import cli

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "segment_to_file", interrupted)  # Ctrl-C while segmenting
    assert main(["--sample", "coffee", "--out", str(tmp_path), "--quiet", *FAST]) == 130
    assert capsys.readouterr().err.strip() == "unsupervised-segmentation: interrupted"


def _read_only(folder: Path) -> None:
    """Make ``folder`` refuse new files, also to root (immutable), where chmod does not."""
    if getattr(os, "geteuid", lambda: -1)() != 0:
        folder.chmod(0o500)
    elif subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root without chattr: no folder here refuses root")


def _writable(folder: Path) -> None:
    """Undo :func:`_read_only`."""
    if getattr(os, "geteuid", lambda: -1)() == 0:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    folder.chmod(0o700)


@pytest.mark.skipif(os.name == "nt", reason="a read-only folder is made with chmod or chattr")
def test_an_out_folder_that_cannot_be_written_is_a_usage_error_before_any_training(
    tmp_path, capsys, prepared_images
):
    tifffile.imwrite(tmp_path / "cells.tif", np.zeros((16, 16), np.uint8))
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    _read_only(read_only)
    try:
        with pytest.raises(SystemExit) as exit_info:
            main([str(tmp_path / "cells.tif"), "--out", str(read_only), *FAST])
    finally:
        _writable(read_only)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"--out {read_only}: cannot write label files there: " in error
    assert list(read_only.iterdir()) == []
    under_a_file = tmp_path / "cells.tif" / "out"
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "cells.tif"), "--out", str(under_a_file), *FAST])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"--out {under_a_file}: cannot write label files there: Not a directory" in error
    assert prepared_images == []  # nothing trained


def test_a_label_tiff_written_meanwhile_by_another_run_is_kept(tmp_path, capsys, monkeypatch):
    image = np.random.default_rng(0).integers(0, 255, (16, 16), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "cells.tif", image)
    out = tmp_path / "out"
    target = out / "cells_labels.tif"
    theirs = b"the labels of another run"
    real_imwrite = tifffile.imwrite

    def and_meanwhile(file, data, **kwargs):
        real_imwrite(file, data, **kwargs)
        target.write_bytes(theirs)  # the other run was faster

    monkeypatch.setattr(tifffile, "imwrite", and_meanwhile)
    assert main([str(tmp_path / "cells.tif"), "--out", str(out), "--quiet", *FAST]) == 1
    output = capsys.readouterr()
    expected = (
        f"skipped cells: {target} appeared while segmenting (another run?) and is kept; "
        "pass --overwrite to replace it"
    )
    assert expected in output.err
    assert "1 of 1 image(s) failed" in output.err and output.out == ""
    assert target.read_bytes() == theirs
    assert sorted(p.name for p in out.iterdir()) == ["cells_labels.tif"]


def _child_environment() -> dict[str, str]:
    """The environment of a child Python that imports this copy of the package."""
    import napari_unsupervised_segmentation

    source = str(Path(napari_unsupervised_segmentation.__file__).parents[1])
    paths = [source, *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _read_until(process: subprocess.Popen, text: bytes, limit_s: float = 120.0) -> bytes:
    """What ``process`` writes to stderr until ``text`` appears, it closes stderr, or
    ``limit_s`` passes (a guard against a hang, not a measurement)."""
    import select

    assert process.stderr is not None
    descriptor, seen = process.stderr.fileno(), b""
    deadline = time.monotonic() + limit_s
    while text not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([descriptor], [], [], deadline - time.monotonic())
        chunk = os.read(descriptor, 4096) if ready else b""
        if not chunk:
            break
        seen += chunk
    return seen


@pytest.mark.skipif(os.name == "nt", reason="Windows has no SIGTERM to send")
def test_sigterm_while_training_stops_like_ctrl_c_and_leaves_no_file(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "cells.tif", image)
    out = tmp_path / "out"
    endless = ["--max-iter", "1000000", "--min-classes", "0"]  # trains until stopped
    command = [sys.executable, "-m", "napari_unsupervised_segmentation"]
    cli = subprocess.Popen(
        [*command, str(tmp_path / "cells.tif"), "--out", str(out), *FAST, *endless],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_child_environment(),
    )
    try:
        progress = _read_until(cli, b" 1/1000000 ")  # the progress bar: training runs
        cli.send_signal(signal.SIGTERM)
        stdout, stderr = cli.communicate(timeout=120)
    finally:
        if cli.poll() is None:  # it never trained, or did not stop: end it before failing
            cli.kill()
            cli.wait()
    assert b" 1/1000000 " in progress
    assert cli.returncode == 143
    assert stderr.decode().rstrip().endswith("unsupervised-segmentation: interrupted (SIGTERM)")
    assert "Traceback" not in stderr.decode() and stdout == b""
    assert list(out.iterdir()) == []  # no label TIFF, no temporary file


@pytest.mark.skipif(os.name == "nt", reason="Windows has no SIGTERM to send")
def test_sigterm_while_writing_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    tifffile.imwrite(tmp_path / "cells.tif", np.zeros((16, 16), np.uint8))
    out = tmp_path / "out"
    before = signal.getsignal(signal.SIGTERM)

    def terminated_midway(file, data, **kwargs):
        file.write(b"II*\x00" + b"\x00" * 100)  # a partial TIFF
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            raise AssertionError("SIGTERM would end the test run: no handler")
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(tifffile, "imwrite", terminated_midway)
    assert main([str(tmp_path / "cells.tif"), "--out", str(out), "--quiet", *FAST]) == 143
    assert capsys.readouterr().err.strip() == "unsupervised-segmentation: interrupted (SIGTERM)"
    assert list(out.iterdir()) == []  # the temporary file is removed
    assert signal.getsignal(signal.SIGTERM) == before  # main leaves the caller's handler


SUMMARY = re.compile(r"^(.+): (.+), (\d+) iterations?, \d+\.\d s -> (.+)$")


def _blocks(shape: tuple[int, ...]) -> np.ndarray:
    """An image of four flat quadrants of different brightness, and a little noise."""
    image = np.random.default_rng(0).integers(0, 20, shape).astype(np.uint8)
    height, width = shape[-2:]
    image[..., : height // 2, width // 2 :] += 80
    image[..., height // 2 :, : width // 2] += 160
    image[..., height // 2 :, width // 2 :] += 230
    return image


def test_each_image_gets_a_summary_line_on_stdout_also_when_quiet(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "cells.tif", _blocks((24, 24)))
    tifffile.imwrite(tmp_path / "timelapse.tif", _blocks((2, 2, 24, 24)), imagej=True,
                     metadata={"axes": "TZYX"})  # fmt: skip
    tifffile.imwrite(tmp_path / "odd\x1b[31m.tif", _blocks((24, 24)))
    names = ("cells.tif", "timelapse.tif", "odd\x1b[31m.tif")
    files = [str(tmp_path / name) for name in names]
    out = tmp_path / "out"
    exact = ["--min-classes", "0"]  # every plane trains for --max-iter iterations
    assert main([*files, "--planes", "--out", str(out), "--quiet", *FAST, *exact]) == 0
    output = capsys.readouterr()
    assert output.err == ""  # --quiet: no progress bars
    lines = output.out.splitlines()
    assert len(lines) == 3
    found = [SUMMARY.match(line) for line in lines]
    assert all(found), lines
    cells, timelapse, odd = (match.groups() for match in found if match)

    labels = read_label_tiff(out / "cells_labels.tif")[0]
    count = int(labels.max())
    count_words = f"{count} label{'s' * (count != 1)}"
    assert cells == ("cells", count_words, "3", str(out / "cells_labels.tif"))

    stack = read_label_tiff(out / "timelapse_labels.tif")[0]
    per_plane = sorted(int(plane.max()) for plane in stack.reshape(4, 24, 24))
    spread = f"{per_plane[0]} to {per_plane[-1]} labels" if per_plane[0] != per_plane[-1] else (
        f"{per_plane[0]} label{'s' * (per_plane[0] != 1)}")  # fmt: skip
    assert timelapse == (
        "timelapse",
        f"4 planes, {spread} per plane",
        "12",  # 3 iterations in each of 4 planes
        str(out / "timelapse_labels.tif"),
    )
    # a file name's control characters are shown escaped: one line, no terminal codes
    assert odd[0] == "odd\\x1b[31m" and odd[3] == str(out / "odd\\x1b[31m_labels.tif")


def test_progress_counts_classes_while_training_then_the_labels_and_names_planes(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "cells.tif", _blocks((24, 24)))
    tifffile.imwrite(tmp_path / "timelapse.tif", _blocks((2, 2, 24, 24)), imagej=True,
                     metadata={"axes": "TZYX"})  # fmt: skip
    files = [str(tmp_path / name) for name in ("cells.tif", "timelapse.tif")]
    out = tmp_path / "out"
    assert main([*files, "--planes", "--out", str(out), *FAST, "--min-classes", "0"]) == 0
    progress = capsys.readouterr().err
    assert re.search(r"cells: .*\d+ class(es)? while training", progress)
    count = int(read_label_tiff(out / "cells_labels.tif")[0].max())
    assert re.search(rf"cells: .*\b{count} labels?\]", progress)  # after post-processing
    for number, (t, z) in enumerate([(1, 1), (1, 2), (2, 1), (2, 2)], start=1):
        assert f"timelapse plane {number}/4 (time {t}/2, z {z}/2): " in progress
    assert "axis" not in progress


def test_a_saved_model_labels_every_plane_and_file_with_the_same_classes(tmp_path, capsys):
    from napari_unsupervised_segmentation import load_model

    rng = np.random.default_rng(8)
    first = rng.integers(0, 4000, (24, 30), dtype=np.uint16)
    first[5:15, 5:20] += 30000
    tifffile.imwrite(tmp_path / "first.tif", first)
    model_path = tmp_path / "cells.model"
    out = tmp_path / "out"
    args = ["--out", str(out), *FAST, "--preset", "paper"]
    assert main([str(tmp_path / "first.tif"), "--save-model", str(model_path), *args]) == 0
    model = load_model(model_path)
    stack = np.stack([first, first[::-1], first])  # a z-stack of three planes
    tifffile.imwrite(tmp_path / "zstack.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    tifffile.imwrite(tmp_path / "second.tif", first[::-1])
    capsys.readouterr()
    files = [str(tmp_path / "zstack.tif"), str(tmp_path / "second.tif")]
    assert main([*files, "--model", str(model_path), "--planes", *args]) == 0
    planes, _ = read_label_tiff(out / "zstack_labels.tif")
    np.testing.assert_array_equal(planes, model.predict(stack))
    np.testing.assert_array_equal(planes[0], planes[2])  # one class, one label, every plane
    np.testing.assert_array_equal(read_label_tiff(out / "second_labels.tif")[0], planes[1])
    printed = capsys.readouterr().out
    assert "zstack: 3 planes" in printed and "no training" in printed


def test_model_flags_are_checked_before_any_image_is_read(tmp_path, capsys):
    broken = tmp_path / "broken.model"
    broken.write_text("not a model")
    image = tmp_path / "img.tif"
    tifffile.imwrite(image, np.zeros((8, 8), np.uint8))
    cases = [
        (["--model", str(broken)], "--model: cannot load a model from .*broken.model"),
        (["--model", str(broken), "--save-model", str(tmp_path / "m")], "give one"),
        (["--sample", "cell", "--save-model", str(tmp_path / "m")], "on one image; 2 given"),
    ]
    for extra, message in cases:
        with pytest.raises(SystemExit) as stop:
            main([str(image), "--out", str(tmp_path / "out"), *extra])
        assert stop.value.code == 2
        assert re.search(message, capsys.readouterr().err)


def test_one_model_gives_a_class_the_same_label_in_every_file(tmp_path, capsys):
    from napari_unsupervised_segmentation import load_model

    rng = np.random.default_rng(9)
    first = rng.integers(0, 2000, (24, 30), dtype=np.uint16)
    first[4:14, 4:18] += 40000  # a bright square on a dark background
    second = rng.integers(0, 2000, (26, 28), dtype=np.uint16)
    second[10:22, 12:26] += 40000  # elsewhere, another size
    tifffile.imwrite(tmp_path / "first.tif", first)
    tifffile.imwrite(tmp_path / "second.tif", second)
    out, model_path = tmp_path / "out", tmp_path / "both.model"
    files = [str(tmp_path / "first.tif"), str(tmp_path / "second.tif")]
    extra = ["--one-model", "--save-model", str(model_path), "--preset", "paper"]
    assert main([*files, "--out", str(out), *FAST, *extra]) == 0
    one, _ = read_label_tiff(out / "first_labels.tif")
    two, _ = read_label_tiff(out / "second_labels.tif")
    # the bright squares share a label, and so do the backgrounds, in both files
    assert one[8, 10] == two[15, 18] and one[20, 25] == two[3, 3]
    model = load_model(model_path)
    np.testing.assert_array_equal(one, model.predict(first))
    np.testing.assert_array_equal(two, model.predict(second))
    printed = capsys.readouterr().out
    assert re.search(
        r"one model: 2 images \(1 channel\), 3 iterations, .* s -> .*both.model", printed
    )
    assert "first: " in printed and "no training" in printed


def test_one_model_is_refused_with_a_saved_model(tmp_path, capsys):
    image = tmp_path / "img.tif"
    tifffile.imwrite(image, np.zeros((8, 8), np.uint8))
    model = tmp_path / "m.model"
    model.write_text("not read")
    with pytest.raises(SystemExit) as stop:
        main([str(image), "--out", str(tmp_path / "out"), "--one-model", "--model", str(model)])
    assert stop.value.code == 2
    assert "--one-model trains one: give one" in capsys.readouterr().err


def test_volume_segments_a_stack_as_3d_objects_with_the_files_voxel_size(tmp_path, capsys):
    from test_volumes import FAST as VOLUME_FAST
    from test_volumes import _assert_one_object, _ball

    from napari_unsupervised_segmentation.core.params import PRESETS

    volume, inside = _ball()  # planes twice as far apart as the pixels
    tifffile.imwrite(tmp_path / "ball.tif", volume, imagej=True, resolution=(1.0, 1.0),
                     metadata={"axes": "ZYX", "spacing": 2.0, "unit": "um"})  # fmt: skip
    flags = ["--max-iter", "40", "--min-classes", "2", "--n-superpixels", "150"]
    flags += ["--compactness", "0.1", "--max-classes", "8", "--n-conv", "1", "--device", "cpu"]
    out = tmp_path / "out"
    args = [str(tmp_path / "ball.tif"), "--out", str(out), "--quiet", *flags, "--volume"]
    assert main(args) == 0
    labels, info = read_label_tiff(out / "ball_labels.tif")
    assert labels.shape == (8, 24, 24) and info["axes"] == "ZYX"
    _assert_one_object(labels, inside)  # one label across z
    settings = PRESETS["default"].replace(**{
        name: getattr(VOLUME_FAST, name)
        for name in ("max_iter", "min_classes", "n_superpixels", "compactness", "max_classes",
                     "n_conv", "device")
    })  # fmt: skip
    expected = segment(volume, settings, spatial_ndim=3, spacing=(2.0, 1.0, 1.0))
    np.testing.assert_array_equal(labels, expected)  # the file's voxel size reached it
    assert main([*args, "--overwrite", "--spacing", "2", "1", "1"]) == 0
    np.testing.assert_array_equal(read_label_tiff(out / "ball_labels.tif")[0], expected)
    capsys.readouterr()
    args[2] = str(tmp_path / "other")
    with pytest.raises(SystemExit):
        main([*args, "--planes"])
    assert "--volume segments each volume on its own" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args[:-1], "--spacing", "2", "1", "1"])
    assert "--spacing is the voxel size of --volume" in capsys.readouterr().err


def test_volume_spacing_comes_from_the_flag_or_the_files_z_y_x_sizes():
    from napari_unsupervised_segmentation.cli import Calibration, volume_spacing

    sizes = Calibration({"Z": 2.0, "Y": 0.5, "X": 0.5}, "micrometer")
    assert volume_spacing(None, sizes, "ZYX", (0, 1, 2)) == (2.0, 0.5, 0.5)
    assert volume_spacing([3, 1, 1], sizes, "ZYX", (0, 1, 2)) == (3.0, 1.0, 1.0)
    assert volume_spacing(None, sizes, "TYX", (0, 1, 2)) is None  # its z is not Z
    assert volume_spacing(None, Calibration({"Y": 0.5, "X": 0.5}, "um"), "ZYX", (0, 1, 2)) is None
    assert volume_spacing(None, sizes, None, (0, 1, 2)) is None
