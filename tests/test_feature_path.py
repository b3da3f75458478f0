"""One feature path: the command line and the worker's jobs give the same features for the same meshes
and settings, whatever order the meshes come in."""

import subprocess
import sys

import numpy as np
import pytest

from sa3df.core.mesh import load
from sa3df.examples import humanoid
from sa3df.features.settings import FeatureSettings
from sa3df.service.context import JobContext, WorkerState
from sa3df.service.feature_service import features_for_job
from sa3df.service.protocol import meshes_to_inputs

STEPS = 20


@pytest.fixture(scope="module")
def two_poses(tmp_path_factory):
    """Two poses of the example character as .obj files, the second turned to face along +x."""
    folder = tmp_path_factory.mktemp("poses")
    paths = []
    for pose, turn in (("walk", 0.0), ("crouch", np.pi / 2)):
        m = humanoid(pose, resolution=16).mesh
        c, s = np.cos(turn), np.sin(turn)
        vertices = m.vertices @ np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]).T
        path = folder / f"{pose}.obj"
        path.write_text("\n".join([f"v {x!r} {y!r} {z!r}" for x, y, z in vertices]
                                  + [f"f {a} {b} {c}" for a, b, c in m.faces + 1]))
        paths.append(path)
    return paths


def _worker_embeddings(meshes, settings: dict, state=None):
    inputs = meshes_to_inputs([(m.vertices, m.faces) for m in meshes])
    ctx = JobContext(inputs, {"features": settings, "mesh_names": [m.name for m in meshes]}, None,
                     state or WorkerState())
    _, result = features_for_job(ctx)
    return result


def test_cli_and_worker_give_identical_embeddings(two_poses, tmp_path):
    cli = subprocess.run(
        [sys.executable, "-m", "sa3df.cli", "features", *map(str, two_poses), "--out", str(tmp_path / "cli"),
         "--steps", str(STEPS), "--device", "cpu", "--up", "y", "--threads", "1", "--cache", str(tmp_path / "cli-cache")],
        capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stderr
    from_cli = [np.load(tmp_path / "cli" / f"{p.stem}.npz")["embedding"] for p in two_poses]

    meshes = [load(p) for p in two_poses]
    settings = FeatureSettings(extractor="geometric", steps=STEPS, device="cpu", up_axis="y",
                               cache_dir=str(tmp_path / "worker-cache"), training={"cpu_threads": 1}).to_params()
    result = _worker_embeddings(meshes, settings)
    assert result.source == "computed"
    for cli_embedding, worker_embedding in zip(from_cli, result.embeddings):
        assert cli_embedding.shape == worker_embedding.shape
        np.testing.assert_array_equal(cli_embedding, worker_embedding.astype(np.float16))  # archives hold float16


def test_the_order_of_the_meshes_does_not_change_their_features(two_poses):
    meshes = [load(p) for p in two_poses]
    settings = {"extractor": "geometric", "steps": STEPS, "device": "cpu", "up_axis": "y"}
    state = WorkerState()
    forward = _worker_embeddings(meshes, settings, state)
    backward = _worker_embeddings(meshes[::-1], settings, state)
    assert backward.source == "memory"  # the same meshes and settings: no second training
    np.testing.assert_array_equal(forward.embeddings[0], backward.embeddings[1])
    np.testing.assert_array_equal(forward.embeddings[1], backward.embeddings[0])


def test_misspelt_feature_settings_are_refused():
    with pytest.raises(ValueError, match="Unknown feature settings: allow_download"):
        FeatureSettings.from_params({"allow_download": True})
    with pytest.raises(ValueError, match="Unknown training effort 'quick'"):
        FeatureSettings.from_params({"effort": "quick"})
    assert FeatureSettings.from_params({"effort": "off"}).steps == 0


def test_the_workers_settings_reach_the_extractor(tmp_path):
    """The weights folder, downloads and up axis the add-on sends are what the extractor gets (it resolves
    hub ids inside the weights folder itself, see extractors.weights.resolve)."""
    from sa3df.features.pipeline import settings_extractor

    params = {"extractor": "dino", "device": "cpu", "weights_dir": str(tmp_path), "allow_downloads": True,
              "up_axis": "z", "effort": "off"}
    extractor = settings_extractor(FeatureSettings.from_params(params))
    assert extractor.name == "dino" and extractor.up_axis == "z"
    assert extractor.featurizer.weights_dir == str(tmp_path) and extractor.featurizer.allow_downloads is True
