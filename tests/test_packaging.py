"""Packaging: napari finds the top-level napari.yaml through the `napari.manifest` entry point.

Two set-ups: this environment (an editable install for development, or a regular one, e.g. tox's),
and a wheel built from the tracked files and installed into a fresh virtual environment, as a
user gets it. `src/napari_unsupervised_segmentation/napari.yaml` is a link to the top-level file:
the editable install reads through the link, the sdist and the wheel carry a copy.
"""

from __future__ import annotations

import configparser
import importlib.metadata
import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import npe2
import pytest

PLUGIN = "napari-unsupervised-segmentation"
PACKAGE = "napari_unsupervised_segmentation"
ENTRY_POINT = f"{PACKAGE}:napari.yaml"
ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL = ROOT / "napari.yaml"

WIDGET = "Segment image"
READER = f"{PLUGIN}.get_reader"
WRITER = f"{PLUGIN}.write_labels"
SAMPLES = {"coffee", "ihc", "cell", "stack"}


def _manifest_file_of(package_dirs) -> Path:
    """The file npe2 reads for the entry point: `napari.yaml` in the package's directory."""
    found = [Path(d) / "napari.yaml" for d in package_dirs if (Path(d) / "napari.yaml").is_file()]
    assert found, f"no napari.yaml in {list(package_dirs)}"
    return found[0]


def _contributions(manifest: npe2.PluginManifest) -> dict:
    contributions = manifest.contributions
    return {
        "widgets": [widget.display_name for widget in contributions.widgets or []],
        "readers": [reader.command for reader in contributions.readers or []],
        "writers": [writer.command for writer in contributions.writers or []],
        "samples": sorted(sample.key for sample in contributions.sample_data or []),
    }


def _check_contributions(found: dict) -> None:
    assert found["widgets"] == [WIDGET]
    assert found["readers"] == [READER]
    assert found["writers"] == [WRITER]
    assert set(found["samples"]) >= SAMPLES


def test_entry_point_leads_npe2_to_the_top_level_manifest():
    entry_points = importlib.metadata.entry_points(group="napari.manifest", name=PLUGIN)
    assert [ep.value for ep in entry_points] == [ENTRY_POINT]

    manager = npe2.PluginManager()
    manager.discover()
    manifest = manager.get_manifest(PLUGIN)
    _check_contributions(_contributions(manifest))
    assert manifest.package_metadata is not None
    assert manifest.package_metadata.version == importlib.metadata.version(PLUGIN)

    spec = importlib.util.find_spec(PACKAGE)
    manifest_file = _manifest_file_of(spec.submodule_search_locations)
    # Editable: the link in the source tree; installed: the copy in site-packages.
    assert manifest_file.read_bytes() == TOP_LEVEL.read_bytes()
    if manifest_file.parent.resolve() == (ROOT / "src" / PACKAGE).resolve():
        assert manifest_file.resolve() == TOP_LEVEL  # editable: through the link, not a copy
    top_level = npe2.PluginManifest.from_file(TOP_LEVEL)
    assert manifest.name == top_level.name
    assert manifest.contributions == top_level.contributions


def _tracked_copy(dest: Path) -> Path:
    """The files git tracks or would track (not ignored), as a clone has them; links stay links."""
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("builds from the files git tracks: needs git and a checkout")
    for name in listing.decode().split("\0"):
        source = ROOT / name
        if not name or not os.path.lexists(source):  # tracked, deleted in the work tree
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    return dest


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _run(command, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    # cwd: an empty folder, so that `python -m build` or `-m venv` cannot pick up a `build/` or
    # `venv/` folder of the work tree instead of the module.
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result


INSPECT = f"""
import importlib.util, json
import npe2
import {PACKAGE} as package

manager = npe2.PluginManager()
manager.discover()
manifest = manager.get_manifest({PLUGIN!r})
contributions = manifest.contributions
print(json.dumps({{
    "package": package.__file__,
    "search_locations": list(importlib.util.find_spec({PACKAGE!r}).submodule_search_locations),
    "version": manifest.package_metadata.version,
    "widgets": [w.display_name for w in contributions.widgets or []],
    "readers": [r.command for r in contributions.readers or []],
    "writers": [w.command for w in contributions.writers or []],
    "samples": sorted(s.key for s in contributions.sample_data or []),
}}))
"""


@pytest.mark.slow
def test_built_wheel_ships_the_manifest_and_npe2_validates_it(tmp_path):
    pytest.importorskip("build", reason="python -m build: pip install -e '.[testing]'")
    source = _tracked_copy(tmp_path / "source")
    dist = tmp_path / "dist"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    # Without PYTHONPATH, the venv imports the plugin from the wheel only.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    # sdist first, then the wheel from the unpacked sdist: what an index serves.
    build = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)]
    _run(build, cwd, env)
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    expected = TOP_LEVEL.read_bytes()

    with tarfile.open(sdist) as archive:
        base = archive.getnames()[0].split("/")[0]
        for name in (f"{base}/napari.yaml", f"{base}/src/{PACKAGE}/napari.yaml"):
            member = archive.getmember(name)
            assert member.isfile(), f"{name} is not a regular file in the sdist"
            assert archive.extractfile(member).read() == expected

    with zipfile.ZipFile(wheel) as archive:
        info = archive.getinfo(f"{PACKAGE}/napari.yaml")
        assert not stat.S_ISLNK(info.external_attr >> 16), "napari.yaml is a link in the wheel"
        assert archive.read(info) == expected
        (entry_points,) = [
            n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")
        ]
        parser = configparser.ConfigParser()
        parser.read_string(archive.read(entry_points).decode())
        assert parser["napari.manifest"][PLUGIN] == ENTRY_POINT

    # A fresh venv; napari, npe2 and the rest come from this environment's site-packages.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv], cwd, env)
    python = str(_venv_python(venv))
    purelib = _run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd, env
    ).stdout.strip()
    if sys.prefix != sys.base_prefix:  # this environment is itself a venv (tox): see into it
        outer = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
        (Path(purelib) / "outer-environment.pth").write_text("\n".join(sorted(outer)) + "\n")
    # --ignore-installed: this environment's copy of the plugin is visible to the venv; pip
    # would take it for the wheel's (and must not touch it).
    pip = [sys.executable, "-m", "pip", "--python", python, "--disable-pip-version-check"]
    _run([*pip, "install", "-q", "--no-deps", "--no-index", "--ignore-installed", wheel], cwd, env)

    found = json.loads(_run([python, "-c", INSPECT], cwd, env).stdout)
    assert Path(found["package"]).resolve().is_relative_to(Path(purelib).resolve()), found
    manifest_file = _manifest_file_of(found["search_locations"])
    assert not manifest_file.is_symlink()
    assert manifest_file.read_bytes() == expected
    assert found["version"] == importlib.metadata.version(PLUGIN)
    _check_contributions(found)

    validated = _run([python, "-m", "npe2", "validate", "--imports", PLUGIN], cwd, env)
    assert "valid" in validated.stdout
