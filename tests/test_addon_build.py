"""The extension zip: its manifest, its wheels, and that the wheels alone run the backend."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import build_addon  # noqa: E402

GOOD_MANIFEST = {
    "schema_version": "1.0.0", "id": "sa3df_tools", "version": "0.1.0", "name": "SA3DF",
    "tagline": "Dense correspondence from 3D features", "maintainer": "us", "type": "add-on",
    "blender_version_min": "4.2.0", "blender_version_max": "5.1.0", "license": ["SPDX:GPL-3.0-or-later"],
    "platforms": ["linux-x64"],
    "permissions": {"files": "Keeps computed features in a cache"},
}


def test_manifest_check_accepts_a_good_manifest_and_names_each_problem():
    assert build_addon.check_manifest(GOOD_MANIFEST) == []
    bad = dict(GOOD_MANIFEST, tagline="Ends with a full stop.", blender_version_min="4.1.0",
               license=["GPL-3.0"], platforms=["linux-x64", "amiga"], id="_sa3df",
               permissions={"files": "Reason.", "telepathy": "x"})
    del bad["maintainer"]
    problems = "\n".join(build_addon.check_manifest(bad))
    for expected in ("maintainer", "tagline", "4.2.0", "SPDX", "amiga", "id", "'files'", "telepathy"):
        assert expected in problems
    for version in (None, "5.2.0", "5.1"):  # CPython 3.11 wheels: Blender 5.1 (Python 3.13) must be excluded
        manifest = dict(GOOD_MANIFEST, blender_version_max=version)
        if version is None:
            del manifest["blender_version_max"]
        assert any("blender_version_max" in p and "Python 3.13" in p for p in build_addon.check_manifest(manifest))


def test_each_blender_python_has_its_own_blender_range():
    newest = dict(GOOD_MANIFEST, blender_version_min="5.1.0", blender_version_max="6.0.0")
    assert build_addon.check_manifest(newest) == [] and build_addon.python_of(newest) == "3.13"
    assert build_addon.python_of(GOOD_MANIFEST) == "3.11"
    straddling = dict(GOOD_MANIFEST, blender_version_max="6.0.0")  # 4.2 to 5.x: no single Python
    assert any("at most 5.1.0" in p for p in build_addon.check_manifest(straddling))
    wrong = build_addon.check_manifest(dict(GOOD_MANIFEST, blender_version_min="4.2.0"), python="3.13")
    assert any("outside 5.1.0-6.0.0" in p for p in wrong)


@pytest.mark.parametrize("wheel, platforms, problem", [
    ("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", ["linux-x64"], None),
    ("safetensors-0.8.0-cp310-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", ["linux-x64"], None),
    ("tqdm-4.70.1-py3-none-any.whl", ["windows-x64"], None),
    ("scipy-1.17.1-cp311-cp311-win_amd64.whl", ["windows-x64"], None),
    ("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", ["windows-x64"], "fit none"),
    ("scipy-1.17.1-cp312-cp312-manylinux_2_28_x86_64.whl", ["linux-x64"], "CPython 3.11"),
    ("numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl", ["linux-x64"], "provided by Blender"),
    ("foo-1.0-cp311-cp311-manylinux_2_34_x86_64.whl", ["linux-x64"], "glibc 2.34"),
    ("torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl", ["linux-x64"], "CUDA build"),
    ("nvidia_cublas_cu12-12.8.4.1-py3-none-manylinux_2_27_x86_64.whl", ["linux-x64"], "CUDA build"),
])
def test_wheel_tags_are_checked_against_python_and_platforms(wheel, platforms, problem):
    problems = build_addon.check_wheel(wheel, platforms)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


@pytest.mark.parametrize("wheel, problem", [
    ("scipy-1.17.1-cp313-cp313-manylinux_2_28_x86_64.whl", None),
    ("safetensors-0.8.0-cp310-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", None),
    ("scipy-1.17.1-cp311-cp311-manylinux_2_28_x86_64.whl", "CPython 3.13"),
])
def test_wheel_tags_for_the_newest_blender_python(wheel, problem):
    problems = build_addon.check_wheel(wheel, ["linux-x64"], "3.13")
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


@pytest.fixture(scope="module")
def built_zip() -> Path:
    return build_addon.ensure_built()


def test_built_zip_is_a_valid_extension_with_cpu_torch_and_without_numpy(built_zip):
    assert build_addon.check_zip(built_zip) == []
    with zipfile.ZipFile(built_zip) as archive:
        names = archive.namelist()
        manifest = tomllib.loads(archive.read("blender_manifest.toml").decode())
    wheels = [Path(w).name for w in manifest["wheels"]]
    dists = {w.split("-")[0].lower() for w in wheels}
    assert {"sa3df", "torch", "scipy", "trimesh", "embreex", "potpourri3d", "robust_laplacian", "scikit_learn",
            "safetensors", "tqdm", "fast_simplification", "joblib", "threadpoolctl", "sympy", "networkx"} <= dists
    assert "numpy" not in dists and not any(n.startswith("wheels/numpy") for n in names)
    assert any(w.startswith("torch-") and "+cpu" in w for w in wheels)
    assert not any(d.startswith("nvidia") for d in dists), "a CUDA torch pulled in NVIDIA wheels"
    assert manifest["platforms"] == [build_addon.this_platform()]
    assert (manifest["blender_version_min"], manifest["blender_version_max"]) == ("4.2.0", "5.1.0")
    assert "network" not in manifest.get("permissions", {})  # no downloads without --semantic
    assert {"__init__.py", "operators.py", "panel.py", "blender_manifest.toml"} <= set(names)


def test_bundled_wheels_alone_run_the_backend(built_zip, tmp_path):
    """Blender's Python has the standard library and numpy: with only those plus the unpacked wheels,
    the backend imports and a job runs (nothing comes from the development environment)."""
    site = tmp_path / "site-packages"
    with zipfile.ZipFile(built_zip) as archive:
        for name in archive.namelist():
            if name.endswith(".whl"):
                archive.extract(name, tmp_path)
    for wheel in (tmp_path / "wheels").glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(site)
    import numpy

    numpy_only = tmp_path / "numpy-only"
    numpy_only.mkdir()
    numpy_dir = Path(numpy.__file__).parent
    (numpy_only / "numpy").symlink_to(numpy_dir)
    if (numpy_dir.parent / "numpy.libs").exists():
        (numpy_only / "numpy.libs").symlink_to(numpy_dir.parent / "numpy.libs")
    script = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
        "import sa3df, sa3df.service.jobs, torch, scipy, trimesh, embreex, potpourri3d, robust_laplacian, sklearn\n"
        "import fast_simplification\n"
        "import safetensors, tqdm\n"
        "assert sa3df.__file__.startswith(sys.argv[1]), sa3df.__file__\n"
        "assert torch.__file__.startswith(sys.argv[1]), torch.__file__\n"
        "out = sa3df.service.jobs.run_job('environment', {}, {})\n"
        "print(out.info['torch'], out.info['device'], ','.join(out.info['jobs']))\n"
    )
    done = subprocess.run([sys.executable, "-S", "-c", script, str(site), str(numpy_only)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    torch_version, device, jobs = done.stdout.split()
    assert torch_version.endswith("+cpu") and device == "cpu"
    assert {"compute_features", "correspondence", "segment", "transfer_weights"} <= set(jobs.split(","))


def test_zip_check_finds_a_platform_without_a_wheel_and_unlisted_files(tmp_path):
    manifest = "\n".join(f"{k} = {v!r}".replace("'", '"') for k, v in GOOD_MANIFEST.items() if k != "permissions")
    manifest = manifest.replace('platforms = ["linux-x64"]', 'platforms = ["linux-x64", "windows-x64"]')
    listed = ["sa3df-0.1.0-py3-none-any.whl", "scipy-1.17.1-cp311-cp311-manylinux_2_28_x86_64.whl"]
    manifest += "\nwheels = [" + ", ".join(f'"./wheels/{w}"' for w in listed) + "]\n"
    zip_path = tmp_path / "x.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("blender_manifest.toml", manifest)
        archive.writestr("__init__.py", "")
        for wheel in listed + ["tqdm-4.70.1-py3-none-any.whl"]:
            archive.writestr(f"wheels/{wheel}", b"")
    problems = "\n".join(build_addon.check_zip(zip_path))
    assert "no wheel of scipy fits windows-x64" in problems
    assert "tqdm-4.70.1-py3-none-any.whl is in the zip but not listed" in problems
    assert "linux-x64" not in problems.replace("manylinux_2_28_x86_64", "")


def test_newest_blender_zip_is_valid_and_ships_without_the_cuda_torch():
    """Linux cp313: no CPU torch wheel exists (the index's is the CUDA build), so the zip has none."""
    zip_path = build_addon.ensure_built("3.13")
    assert zip_path.name == "sa3df_tools-0.1.0-cp313-linux-x64.zip"
    assert build_addon.check_zip(zip_path) == []
    with zipfile.ZipFile(zip_path) as archive:
        manifest = tomllib.loads(archive.read("blender_manifest.toml").decode())
    wheels = [Path(w).name for w in manifest["wheels"]]
    assert (manifest["blender_version_min"], manifest["blender_version_max"]) == ("5.1.0", "6.0.0")
    assert not any(w.startswith(("torch-", "nvidia")) for w in wheels)
    assert all("cp311" not in w for w in wheels) and any("cp313" in w for w in wheels)
    assert {"sa3df", "scipy", "trimesh", "potpourri3d", "scikit_learn"} <= {w.split("-")[0].lower() for w in wheels}
