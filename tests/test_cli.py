"""The command line: clear one-line errors with non-zero exit on bad input."""

import subprocess
import sys


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sa3df.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_missing_file_is_one_clear_line(tmp_path):
    result = run_cli("features", tmp_path / "nope.obj", "--out", tmp_path / "o")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"sa3df features: error: '{tmp_path / 'nope.obj'}' does not exist"]


def test_mesh_without_faces_is_named(tmp_path):
    obj = tmp_path / "Chair.obj"
    obj.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    result = run_cli("segment", obj, "--out", tmp_path / "o")
    assert result.returncode == 2 and "Mesh 'Chair' has no faces (3 loose vertices)" in result.stderr
