"""Shared test set-up: data discovery, Blender sandboxing, and the heavy-test switch."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The add-on's scene I/O modules are imported directly (with the bpy module) by tests.
sys.path.insert(0, str(REPO))
from blender_scene import remove_scratch_dirs, sandbox_blender_user  # noqa: E402

sandbox_blender_user()


def find_data_dir() -> Path | None:
    """$SA3DF_DATA, else ../shared/data next to the repository."""
    candidates = [os.environ.get("SA3DF_DATA"), REPO.parent / "shared" / "data"]
    for c in candidates:
        if c and Path(c, "README.md").exists():
            return Path(c)
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = find_data_dir()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("shared data not found ($SA3DF_DATA or ../shared/data): CI must run data tests")
        pytest.skip("shared data not found: set SA3DF_DATA or place it at ../shared/data")
    return path


@pytest.fixture(scope="module")
def addon(tmp_path_factory):
    """The built zip installed and enabled in headless Blender (geometric features, no training, CPU);
    returns the add-on's preferences. Disabled again afterwards (its worker released), so later modules
    can register the add-on from the source tree."""
    bpy = pytest.importorskip("bpy", reason="bpy (Blender as a module) is not installed")
    import addon_utils

    from blender_scene import EXTENSION_MODULE, install_extension
    from sa3df.service import client as worker_client

    yield install_extension(tmp_path_factory.mktemp("sa3df-cache"), extractor="geometric", effort="off",
                            device="cpu")
    worker_client.release_shared_client()
    addon_utils.disable(EXTENSION_MODULE, default_set=True)
    assert not hasattr(bpy.types, "SA3DF_PT_main")


@pytest.fixture
def man(addon, data_dir):
    """The man (armature, body) alone in the scene, with the extension enabled."""
    from blender_scene import add_character, clear_scene

    clear_scene()
    return add_character(data_dir / "humanoids" / "quaternius_male_casual.fbx")


@pytest.fixture(scope="session")
def exported(data_dir):
    """Every test character's arrays (tests/cross_cases.py), exported through bpy unless its npz cache has them."""
    import cross_cases

    try:
        return {name: cross_cases.character_arrays(name) for name in cross_cases.CHARACTERS}
    except ModuleNotFoundError as missing:  # no cache and no bpy
        pytest.skip(f"exporting the characters needs bpy ({missing})")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("SA3DF_HEAVY") == "1":
        return
    skip = pytest.mark.skip(reason="heavy test: set SA3DF_HEAVY=1 to run")
    for item in items:
        if "heavy" in item.keywords:
            item.add_marker(skip)


BACKEND_DEPENDENCIES = ("torch", "scipy", "trimesh", "sklearn", "potpourri3d", "robust_laplacian", "safetensors")
NO_BACKEND_HERE = importlib.util.find_spec("torch") is None


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """Without the backend's dependencies in the test process (bpy 5.2 on Python 3.13: the backend runs in an
    external Python), a test module that imports them itself is skipped, saying why, instead of erroring."""
    outcome = yield
    report = outcome.get_result()
    if NO_BACKEND_HERE and report.failed and any(f"No module named '{name}'" in str(report.longrepr)
                                                 for name in BACKEND_DEPENDENCIES):
        report.outcome = "skipped"
        report.longrepr = (str(collector.path), 0, "Skipped: needs the torch backend in the test process "
                                                   "(none on this Python: its worker runs in an external one)")


_EXIT_STATUS = {}


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS["code"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """bpy 4.2 as a module crashes in its exit handlers once the glTF importer has run (segfault after the
    last test, turning a green run red); once pytest is done, leave without running them."""
    bpy = sys.modules.get("bpy")
    version = getattr(getattr(bpy, "app", None), "version", None)
    if version is not None and tuple(version) < (4, 3) and "code" in _EXIT_STATUS:
        sys.stdout.flush()
        sys.stderr.flush()
        remove_scratch_dirs()
        os._exit(_EXIT_STATUS["code"])
