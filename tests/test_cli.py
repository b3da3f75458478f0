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


def test_segment_with_an_up_axis_keeps_left_and_right_limbs_apart(tmp_path):
    """`sa3df segment --up z` makes the add-on's sided parts: no part holds vertices of both arms' or both
    legs' far ends (plain joint k-means, without --up, may put both legs in one part)."""
    from sa3df.examples import humanoid

    mesh = humanoid("rest", resolution=24).mesh
    path = tmp_path / "man.obj"
    path.write_text("\n".join([f"v {x} {y} {z}" for x, y, z in mesh.vertices] + [f"f {a} {b} {c}" for a, b, c in mesh.faces + 1]))
    result = run_cli("segment", path, "-k", "6", "--up", "z", "--steps", "30", "--out", tmp_path / "s",
                     "--cache", tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert "left and right apart" in result.stdout
    labels = np.loadtxt(tmp_path / "s" / "man_labels.txt", dtype=int)
    x, z = mesh.vertices[:, 0], mesh.vertices[:, 2]
    far = np.abs(x) > 0.6 * np.abs(x).max()  # hands and arms
    feet = z < z.min() + 0.1 * np.ptp(z)
    for limb in (far, feet):
        left, right = set(labels[limb & (x < 0)]), set(labels[limb & (x > 0)])
        assert left and right and not left & right, (left, right)
