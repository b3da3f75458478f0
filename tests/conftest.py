"""Shared test set-up: data discovery, Blender sandboxing, and the heavy-test switch."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The add-on's scene I/O modules are imported directly (with the bpy module) by tests.
sys.path.insert(0, str(REPO))
# `import bpy` writes to ~/.config/blender unless told otherwise: keep tests out of the user's config.
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="sa3df-blender-user-"))


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


def pytest_collection_modifyitems(config, items):
    if os.environ.get("SA3DF_HEAVY") == "1":
        return
    skip = pytest.mark.skip(reason="heavy test: set SA3DF_HEAVY=1 to run")
    for item in items:
        if "heavy" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """Without torch in the test process (bpy 5.2 on Python 3.13: the backend runs in an external Python),
    a test module that imports the torch backend itself is skipped, saying why, instead of erroring."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and "No module named 'torch'" in str(report.longrepr):
        report.outcome = "skipped"
        report.longrepr = (str(collector.path), 0, "Skipped: needs torch in the test process (none on this Python)")


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
        os._exit(_EXIT_STATUS["code"])
