"""The command line: clear one-line errors with non-zero exit on bad input."""

import subprocess
import sys

import numpy as np


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


def test_match_with_the_rest_prior_finds_a_scaled_moved_shuffled_copy(tmp_path):
    """The copy's vertices come in shuffled order, so a prior that paired the wrong points would show."""
    from sa3df.examples import humanoid

    character = humanoid("rest", resolution=24)
    vertices, faces = character.mesh.vertices, character.mesh.faces
    order = np.random.default_rng(0).permutation(len(vertices))  # copy vertex k is vertex order[k]

    def write(path, v, f):
        path.write_text("\n".join([f"v {x} {y} {z}" for x, y, z in v] + [f"f {a} {b} {c}" for a, b, c in f + 1]))

    write(tmp_path / "a.obj", vertices, faces)
    write(tmp_path / "b.obj", vertices[order] * 2.0 + 1.0, np.argsort(order)[faces])
    result = run_cli("match", tmp_path / "a.obj", tmp_path / "b.obj", "--out", tmp_path / "m", "--steps", "20",
                     "--rest-prior", "0.5", "--up", "z", "--cache", tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    matched = np.loadtxt(tmp_path / "m" / "target_to_source.txt", dtype=int)
    assert (matched == order).mean() > 0.99
    bad = run_cli("match", tmp_path / "a.obj", tmp_path / "b.obj", "--out", tmp_path / "m", "--steps", "5",
                  "--rest-prior", "-1", "--cache", tmp_path / "cache")
    assert bad.returncode == 2 and "--rest-prior must be 0 or more, got -1.0" in bad.stderr
