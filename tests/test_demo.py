"""The main job end to end: the demo's surface-aware features beat the base features it starts from."""

import json

import numpy as np
import trimesh

from sa3df import examples
from sa3df.demo import run_demo
from test_cli import run_cli


def test_demo_writes_results_and_beats_base_features(tmp_path):
    report = run_demo(tmp_path, steps=200)
    base, ours = report["mean"]["base"], report["mean"]["embedding"]
    assert ours["mean_error"] < 0.8 * base["mean_error"], (base, ours)
    assert ours["auc"] > base["auc"] + 0.03
    assert ours["flip_rate"] <= base["flip_rate"] + 0.01
    assert json.loads((tmp_path / "report.json").read_text())["mean"]["embedding"]["count"] == 2000
    target = trimesh.load(tmp_path / "correspondence_target.ply", process=False)
    assert len(target.vertices) == examples.humanoid("crouch").mesh.n_vertices
    assert len(np.unique(target.visual.vertex_colors[:, :3], axis=0)) > 500, "a dense colour map, not a few blobs"


def test_eval_command_on_a_folder_of_frames(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, pose in enumerate(["rest", "walk"]):
        m = examples.humanoid(pose).mesh
        trimesh.Trimesh(m.vertices, m.faces, process=False).export(frames / f"{i}_{pose}.obj")
    result = run_cli("eval", "--folder", frames, "--symmetric", "--steps", "100", "--json", tmp_path / "r.json",
                     "--cache", tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert "flip_rate" in result.stdout and "surface-aware" in result.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    (pair,) = report["pairs"]
    assert pair["pairs"] == 2000 and 0 <= pair["embedding"]["flip_rate"] <= 1
    assert pair["embedding"]["mean_error"] < 0.2
