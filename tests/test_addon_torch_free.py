"""Torch never enters Blender's process: the built extension is enabled in a fresh headless Blender, every
button is pressed, and after each step torch must be absent from ``sys.modules`` (the worker has it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("bpy", reason="bpy (Blender as a module) is not installed")
pytestmark = pytest.mark.blender
SESSION = Path(__file__).with_name("torch_free_session.py")
EXPECTED_ERRORS = {"install_backend": "/nonexistent/python3"}  # a missing base Python: the error names it


def test_no_operator_imports_torch_into_blender(tmp_path, data_dir):
    report = tmp_path / "report.json"
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender-user"))
    done = subprocess.run([sys.executable, str(SESSION), str(report), str(data_dir)], env=env,
                          capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0 and report.exists(), (done.stdout + done.stderr)[-4000:]
    steps = json.loads(report.read_text())["steps"]
    pressed = [s["step"] for s in steps]
    assert pressed[0] == "enabled" and steps[0]["outcome"] is True
    assert {"compute_features", "show_correspondence", "segment_parts", "transfer_skin_weights", "transfer_motion",
            "align_pose", "check_backend", "cancel_job", "clear", "release_worker", "install_backend"} <= set(pressed)
    assert [s["step"] for s in steps if s["torch"]] == [], steps
    for step in steps[1:]:
        if step["step"] in EXPECTED_ERRORS:
            assert str(step["outcome"]).startswith("error:") and EXPECTED_ERRORS[step["step"]] in step["outcome"], step
        else:
            assert step["outcome"] == ["FINISHED"], step
