"""The add-on's backend environments without Blender: worker settings per mode, the device line the panel
shows, and a managed environment installed offline from local wheels (pip --no-index --find-links) that
runs the worker, then a failing reinstall that keeps it and says why."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sa3df.service import client

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _addon_module(name: str):
    """An add-on module that needs no bpy, loaded from its file (the package's __init__ imports bpy)."""
    spec = importlib.util.spec_from_file_location(f"sa3df_addon_{name}", REPO / "sa3df_addon" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


backend_env = _addon_module("backend_env")
VERSION = backend_env.addon_version(REPO / "sa3df_addon")


def test_add_on_and_backend_versions_agree():
    import sa3df

    assert VERSION == sa3df.__version__


@pytest.mark.parametrize("report, line", [
    ({"device": "cuda", "device_type": "cuda", "cuda": "NVIDIA GeForce RTX 4090", "torch": "2.8.0+cu128",
      "precision": "fp16", "threads": 16}, "CUDA: NVIDIA GeForce RTX 4090, torch 2.8.0+cu128, fp16"),
    ({"device": "cpu", "device_type": "cpu", "torch": "2.13.0+cpu", "threads": 2, "precision": "fp32"},
     "CPU, 2 threads, torch 2.13.0+cpu"),
    ({"device": "mps", "torch": "2.8.0", "precision": "fp16"}, "Apple GPU (MPS), torch 2.8.0, fp16"),
    (None, "Device not checked yet"),
])
def test_device_line_for_each_report(report, line):
    assert backend_env.describe_device(report) == line


def test_worker_settings_per_environment_and_clear_errors(tmp_path):
    bundled = backend_env.worker_settings("BUNDLED", VERSION, tmp_path)
    assert bundled["python"] is None and bundled["pythonpath"] is None  # Blender's Python with its sys.path
    external = backend_env.worker_settings("EXTERNAL", VERSION, tmp_path, sys.executable)
    assert external["python"] == sys.executable and external["pythonpath"] == []  # not Blender's sys.path
    with pytest.raises(backend_env.BackendEnvError, match="not set up yet"):
        backend_env.worker_settings("MANAGED", VERSION, tmp_path)
    with pytest.raises(backend_env.BackendEnvError, match="is not a file"):
        backend_env.worker_settings("EXTERNAL", VERSION, tmp_path, str(tmp_path / "python9"))


def test_an_interpreter_without_the_backend_or_of_another_version_is_named(tmp_path):
    found = backend_env.check_interpreter(sys.executable, VERSION)
    assert found["sa3df"] == VERSION and found["torch"]
    with pytest.raises(backend_env.BackendEnvError, match="but this add-on is 9.9.9"):
        backend_env.check_interpreter(sys.executable, "9.9.9")
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    with pytest.raises(backend_env.BackendEnvError, match="has no sa3df backend"):
        backend_env.check_interpreter(backend_env.venv_python(bare), VERSION)


def test_worker_of_another_version_is_refused_by_name(tmp_path):
    worker = client.WorkerClient(python=sys.executable, pythonpath=[], expected_version="9.9.9")
    try:
        job = worker.wait(worker.submit("environment", {}, {}))
    finally:
        worker.release()
    assert job.state == client.FAILED and "this add-on needs sa3df 9.9.9" in job.error and VERSION in job.error


@pytest.fixture(scope="module")
def offline_wheels(tmp_path_factory) -> tuple[Path, Path]:
    """(the extension's wheel folder, as unpacked from the built zip; a local folder with what Blender
    itself provides: numpy). Only fetching numpy here may use the network; the installs never do."""
    import build_addon

    root = tmp_path_factory.mktemp("wheels")
    with zipfile.ZipFile(build_addon.ensure_built("3.11")) as archive:
        for name in archive.namelist():
            if name.startswith("wheels/") and name.endswith(".whl"):
                archive.extract(name, root / "extension")
    local = root / "local"
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--no-deps", "-d", str(local),
                    f"numpy=={np.__version__}"], check=True)
    return root / "extension" / "wheels", local


def test_managed_environment_installs_offline_runs_the_worker_and_survives_a_failed_reinstall(
        offline_wheels, tmp_path):
    extension_wheels, local = offline_wheels
    root = tmp_path / "managed"
    installer = backend_env.Installer(root=root, wheels=extension_wheels, addon_version=VERSION,
                                      base_python=sys.executable, find_links=str(local))
    installer.start()
    assert installer.wait(timeout=1200) == "done", installer.error
    python = backend_env.venv_python(root / "venv")
    found = backend_env.check_interpreter(python, VERSION)
    assert found["torch"].endswith("+cpu") and "--no-index" in installer.log_path.read_text()

    report = _environment(backend_env.worker_settings("MANAGED", VERSION, root))
    assert report["location"].startswith(str(root / "venv")) and report["device"] == "cpu"
    assert backend_env.describe_device(report).startswith("CPU, ")

    sa3df_only = tmp_path / "sa3df-only"  # a zip without torch, and no torch in the local folder either
    sa3df_only.mkdir()
    for wheel in extension_wheels.glob("sa3df-*.whl"):
        (sa3df_only / wheel.name).symlink_to(wheel)
    failing = backend_env.Installer(root=root, wheels=sa3df_only, addon_version=VERSION,
                                    base_python=sys.executable, find_links=str(local))
    failing.start()
    assert failing.wait(timeout=600) == "failed"
    assert "installing torch (CPU) failed" in failing.error and "torch" in failing.error.split("failed", 1)[1]
    assert str(failing.log_path) in failing.error
    assert _environment(backend_env.worker_settings("MANAGED", VERSION, root))["sa3df"] == VERSION  # still works


def test_installing_needs_online_access_or_a_local_folder(tmp_path):
    installer = backend_env.Installer(root=tmp_path, wheels=tmp_path, addon_version=VERSION)
    installer.start()
    assert installer.wait(timeout=60) == "failed" and "Allow Online Access" in installer.error
    missing = backend_env.Installer(root=tmp_path, wheels=tmp_path, addon_version=VERSION,
                                    find_links=str(tmp_path / "nowhere"))
    missing.start()
    assert missing.wait(timeout=60) == "failed" and "does not exist" in missing.error


def _environment(settings: dict) -> dict:
    worker = client.WorkerClient(**settings)
    try:
        job = worker.wait(worker.submit("environment", {}, {"device": "auto"}))
    finally:
        worker.release()
    assert job.state == client.DONE, job.error
    return job.info


def test_environment_job_picks_cuda_and_fp16_when_torch_reports_a_gpu(monkeypatch):
    """No GPU here: torch is told it has one; "auto" must then pick it, at half precision."""
    import torch

    from sa3df.service import jobs

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA GeForce RTX 4090")
    info = jobs.run_job("environment", {}, {"device": "auto"}).info
    assert (info["device_type"], info["cuda"], info["precision"]) == ("cuda", "NVIDIA GeForce RTX 4090", "fp16")
    assert backend_env.describe_device(info) == f"CUDA: NVIDIA GeForce RTX 4090, torch {torch.__version__}, fp16"
