"""`sa3df batch` on a local Ray: the same features as the single-process path, resume, retries, failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")

from sa3df import cli  # noqa: E402
from sa3df.core import files as sio  # noqa: E402

POSES = ("rest", "walk", "crouch")


@pytest.fixture(scope="module")
def local_ray():
    """One Ray start for the module; `sa3df batch` in this process reuses the connection."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Three small characters (one in a sub-folder) and a checkpoint trained briefly on one of them."""
    import trimesh

    from sa3df.examples import humanoid
    from sa3df.features.pipeline import compute_surface_features
    from sa3df.features.settings import FeatureSettings

    root = tmp_path_factory.mktemp("batch")
    (root / "meshes" / "more").mkdir(parents=True)
    paths = []
    for pose in POSES:
        mesh = humanoid(pose, resolution=20).mesh
        path = root / "meshes" / ("more" if pose == "crouch" else "") / f"{pose}.ply"
        trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).export(path)
        paths.append(path)
    result = compute_surface_features([sio.load_mesh(paths[0])], FeatureSettings(steps=10))
    result.save(root / "network")
    return root, paths


def batch(*args) -> int:
    return cli.main(["batch", *map(str, args)])


def single_process(tmp, *args) -> list[sio.MeshFeatures]:
    """`sa3df features` in this process: the reference the batch outputs must equal."""
    out = tmp / "single"
    assert cli.main(["features", *map(str, args), "--out", str(out)]) == 0
    return {p.stem: sio.load_features(p) for p in out.glob("*.npz")}


def assert_same_features(archive: Path, reference: sio.MeshFeatures) -> None:
    stored = sio.load_features(archive)
    assert stored.extractor == reference.extractor
    np.testing.assert_array_equal(stored.mesh.vertices, reference.mesh.vertices)
    np.testing.assert_array_equal(stored.base, reference.base)
    np.testing.assert_array_equal(stored.embedding, reference.embedding)


def test_embedding_batch_equals_single_process_and_resumes(local_ray, dataset, tmp_path, capsys):
    root, paths = dataset
    out, network, cache = tmp_path / "out", root / "network", tmp_path / "cache"
    assert batch(root / "meshes", "--out", out, "--checkpoint", network, "--steps", 0, "--cache", cache) == 0
    assert "batch: 3 done, 0 skipped, 0 failed" in capsys.readouterr().out
    outputs = [out / "rest.npz", out / "walk.npz", out / "more" / "crouch.npz"]
    reference = single_process(tmp_path, *paths, "--checkpoint", network, "--steps", 0, "--cache", tmp_path / "c2")
    for output in outputs:
        assert_same_features(output, reference[output.stem])
    assert not [p for p in out.rglob("*") if "partial" in p.name]

    assert batch(root / "meshes", "--out", out, "--checkpoint", network, "--steps", 0, "--cache", cache) == 0
    assert "batch: 0 done, 3 skipped, 0 failed" in capsys.readouterr().out

    outputs[1].write_bytes(outputs[1].read_bytes()[:100])  # a truncated archive does not count as finished
    assert batch(root / "meshes", "--out", out, "--checkpoint", network, "--steps", 0, "--cache", cache) == 0
    assert "batch: 1 done, 2 skipped, 0 failed" in capsys.readouterr().out
    assert_same_features(outputs[1], reference["walk"])


def test_groups_from_a_manifest_train_together_as_in_one_process(local_ray, dataset, tmp_path, capsys):
    root, paths = dataset
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"# two frames trained together, one alone\n{paths[0]}\tpair\n{paths[1]}\tpair\n"
                        f"{paths[2]}\n")
    out = tmp_path / "out"
    # Sums run in torch's threads: two per task here, as in this process, and training on one
    # (fixed, not chosen by the load at the time) for bit-equal weights.
    assert torch.get_num_threads() == 2
    assert batch(manifest, "--out", out, "--steps", 8, "--threads", 1, "--cache", tmp_path / "cache",
                 "--cpus-per-task", 2) == 0
    assert "batch: 3 done, 0 skipped, 0 failed" in capsys.readouterr().out
    pair = single_process(tmp_path, paths[0], paths[1], "--steps", 8, "--threads", 1, "--cache", tmp_path / "c2")
    assert_same_features(out / "rest.npz", pair["rest"])
    assert_same_features(out / "walk.npz", pair["walk"])

    paths[2].with_name("list2.txt").write_text(f"{paths[2]}\tpair2\n{paths[0]}\tpair2\n")  # other group: redo
    assert batch(paths[2].with_name("list2.txt"), "--out", out, "--steps", 8, "--cache", tmp_path / "cache") == 0
    assert "batch: 2 done, 0 skipped, 0 failed" in capsys.readouterr().out


def test_base_features_of_a_data_set_then_train_on_them(local_ray, dataset, tmp_path, capsys):
    """Without --checkpoint, --steps 0 stores base features only; `sa3df train` reads them back."""
    from sa3df.features.extractors import create_extractor

    root, paths = dataset
    out = tmp_path / "out"
    assert batch(root / "meshes", "--out", out, "--steps", 0, "--cache", tmp_path / "cache") == 0
    stored = sio.load_features(out / "more" / "crouch.npz")
    expected = create_extractor("geometric").extract(sio.load_mesh(paths[2]))
    np.testing.assert_allclose(stored.base, expected, rtol=1e-3, atol=1e-3)  # stored as float16
    np.testing.assert_allclose(np.linalg.norm(stored.embedding, axis=1), 1.0, rtol=1e-3)  # float16 rows
    assert cli.main(["train", str(out), "--out", str(tmp_path / "net"), "--steps", "5"]) == 0
    assert "trained on 3 meshes" in capsys.readouterr().out
    assert (tmp_path / "net" / "model.safetensors").is_file()


def test_a_killed_worker_is_retried_and_a_bad_mesh_is_reported(local_ray, dataset, tmp_path):
    from sa3df.batch import RaySettings, plan_batch, run_batch
    from sa3df.features.extractors.geometric import GeometricExtractor
    from sa3df.features.settings import FeatureSettings

    root, paths = dataset
    marker = tmp_path / "died_once"

    class DiesOnce(GeometricExtractor):  # defined here, so Ray pickles it whole to the workers
        def extract(self, mesh, progress=None):
            if mesh.name == "walk" and not marker.exists():
                marker.touch()
                os._exit(1)  # the worker process dies mid-task, as when a node is lost
            return super().extract(mesh, progress)

    (tmp_path / "in").mkdir()
    for path in paths[:2]:
        (tmp_path / "in" / path.name).write_bytes(path.read_bytes())
    (tmp_path / "in" / "flat.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    features = FeatureSettings(extractor=DiesOnce(device="cpu"), checkpoint=root / "network", steps=0)
    groups = plan_batch(tmp_path / "in", tmp_path / "out", features)
    summary = run_batch(groups, features, RaySettings(retries=2), summary_path=tmp_path / "out" / "summary.json")
    assert marker.exists() and summary.done == 2
    assert list(summary.failed) == [str(tmp_path / "in" / "flat.obj")]
    assert "Mesh 'flat' has no faces (3 loose vertices)" in summary.failed[str(tmp_path / "in" / "flat.obj")]
    assert sio.load_features(tmp_path / "out" / "walk.npz").mesh.n_vertices > 100
    recorded = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert recorded["done"] == 2 and list(recorded["failed"]) == list(summary.failed)

    marker.unlink()
    (tmp_path / "out" / "walk.npz").unlink()
    summary = run_batch(plan_batch(tmp_path / "in", tmp_path / "out", features), features, RaySettings(retries=0))
    assert summary.skipped == 1 and summary.done == 0
    assert "died" in summary.failed[str(tmp_path / "in" / "walk.ply")].lower()


def test_joins_a_running_cluster_by_address(local_ray, dataset, tmp_path):
    """`--ray ADDRESS` from another process: the module's Ray stands in for a cluster."""
    root, paths = dataset
    address = ray.get_runtime_context().gcs_address
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    result = subprocess.run(
        [sys.executable, "-m", "sa3df.cli", "batch", str(root / "meshes"), "--out", str(tmp_path / "out"),
         "--checkpoint", str(root / "network"), "--steps", "0", "--ray", address, "--cache", str(tmp_path / "c")],
        capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "batch: 3 done, 0 skipped, 0 failed" in result.stdout
    assert sio.load_features(tmp_path / "out" / "more" / "crouch.npz").embedding.shape[0] > 100


def test_bad_batch_input_is_one_clear_error(tmp_path, capsys, monkeypatch):
    (tmp_path / "empty").mkdir()
    assert batch(tmp_path / "empty", "--out", tmp_path / "o", "--steps", 5) == 2
    assert f"Folder '{tmp_path / 'empty'}' holds no meshes" in capsys.readouterr().err
    assert batch(tmp_path / "empty", "--out", tmp_path / "o", "--steps", 0, "--checkpoint", tmp_path / "nope") == 2
    assert f"Checkpoint '{tmp_path / 'nope'}' does not exist" in capsys.readouterr().err
    (tmp_path / "empty" / "a.obj").write_text("v 0 0 0\n")
    monkeypatch.setitem(sys.modules, "ray", None)  # as without the extra
    assert batch(tmp_path / "empty", "--out", tmp_path / "o", "--steps", 5) == 2
    assert "sa3df batch needs Ray: pip install 'sa3df[ray]'" in capsys.readouterr().err
    monkeypatch.undo()
    (tmp_path / "list.txt").write_text("a.obj\n")
    assert batch(tmp_path / "list.txt", "--out", tmp_path / "o", "--steps", 5) == 2
    assert f"line 1: '{tmp_path / 'a.obj'}' does not exist" in capsys.readouterr().err
