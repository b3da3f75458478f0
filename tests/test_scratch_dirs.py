"""Test runs, benches and render scripts leave no scratch folders behind: a Blender user folder holding an
installed extension is 65 MB to 1.2 GB, and runs that left theirs in /tmp once filled a CI disk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def run_child(code: str, env: dict | None = None) -> list[str]:
    """Run ``code`` in a fresh interpreter with tests/ importable; returns the lines it printed."""
    script = f"import sys; sys.path.insert(0, {str(TESTS)!r})\n{code}"
    environment = {k: v for k, v in os.environ.items() if k != "BLENDER_USER_RESOURCES"}
    environment.update(env or {})
    done = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout.split()


def test_a_sandboxed_blender_user_folder_is_removed_when_the_process_exits():
    folder, marker = run_child(
        "import os; from pathlib import Path; from blender_scene import sandbox_blender_user\n"
        "sandbox_blender_user('sa3df-test-user-')\n"
        "path = Path(os.environ['BLENDER_USER_RESOURCES']); (path / 'extensions').mkdir()\n"
        "(path / 'extensions' / 'wheel.whl').write_bytes(b'x' * 1000); print(path, path.is_dir())")
    assert marker == "True"
    assert not Path(folder).exists()


def test_scratch_folders_go_before_an_os_exit_too():
    """bpy 4.2 sessions end with os._exit, which skips atexit: they call remove_scratch_dirs first."""
    folder, = run_child(
        "import os; from blender_scene import remove_scratch_dirs, scratch_dir\n"
        "path = scratch_dir('sa3df-test-cache-'); print(path, flush=True); remove_scratch_dirs(); os._exit(0)")
    assert not Path(folder).exists()


def test_a_blender_user_folder_the_caller_chose_is_kept(tmp_path):
    chosen = tmp_path / "my-blender-user"
    chosen.mkdir()
    folder, = run_child(
        "import os; from blender_scene import sandbox_blender_user\n"
        "sandbox_blender_user(); print(os.environ['BLENDER_USER_RESOURCES'])",
        env={"BLENDER_USER_RESOURCES": str(chosen)})
    assert folder == str(chosen)
    assert chosen.is_dir()
