"""Done means: trained on two walk-cycle frames of a real character, the surface-aware features
match frame A to frame B better than the base features they were trained from.

The quaternius man (941 vertices, several components: body, eyes...) is posed by Blender at two
frames of its Walk action; faces are shared, so the ground truth correspondence is the vertex index.
"""

import numpy as np
import pytest

from sa3df.evaluate import flip_rate, geodesic_errors, mirrored_ground_truth
from sa3df.match import nearest_neighbors
from sa3df.mesh import from_arrays
from sa3df.pipeline import compute_surface_features
from sa3df.train import TrainConfig

pytestmark = pytest.mark.blender

FRAMES = (1, 9)  # walk cycle: right leg forward, then the other leg (the most different pose in the cycle)


@pytest.fixture(scope="module")
def walk_frames(data_dir):
    """(rest (N,3), frame A (N,3), frame B (N,3), faces (T,3)): world-space vertices from Blender."""
    pytest.importorskip("bpy")
    import blender_scene
    from sa3df_addon.mesh_io import mesh_arrays

    armature, meshes = blender_scene.import_character(data_dir / "humanoids" / "quaternius_male_casual.fbx")
    body = meshes[0]
    rest, faces = mesh_arrays(body, evaluated=False)
    blender_scene.set_action(armature, "Walk")
    posed = [blender_scene.posed_vertices(body, frame) for frame in FRAMES]
    return rest, posed[0], posed[1], faces


def _scores(target, query_features, reference_features, mirror):
    truth = np.arange(target.n_vertices)
    predicted, _ = nearest_neighbors(query_features, reference_features)
    errors = geodesic_errors(target, predicted, truth)
    return float(errors.mean()), float(flip_rate(target, predicted, truth, mirror[truth]))


def test_surface_features_beat_base_features_between_walk_frames(walk_frames):
    rest, va, vb, faces = walk_frames
    assert len(rest) == 941 and np.abs(va - vb).max() > 1.0, "the two frames must differ clearly in pose"
    frame_a = from_arrays(va, faces, name="walk_a", weld=False)  # vertex ids are the ground truth
    frame_b = from_arrays(vb, faces, name="walk_b", weld=False)
    mirror = mirrored_ground_truth(rest, faces, axis=0)  # the character's left/right axis is x

    config = TrainConfig(steps=600, seed=0, device="cpu", cpu_threads=1)
    result = compute_surface_features([frame_a, frame_b], "geometric", train_config=config)
    a, b = result.features
    base_error, base_flips = _scores(frame_b, a.base, b.base, mirror)
    ours_error, ours_flips = _scores(frame_b, a.embedding, b.embedding, mirror)
    print(f"\nwalk frame {FRAMES[0]} -> {FRAMES[1]}, nearest neighbour, {frame_a.n_vertices} vertices")
    print(f"  base (geometric, 54-d): mean geodesic error {base_error:.4f} sqrt(area), flip rate {base_flips:.3f}")
    print(f"  surface-aware (128-d):  mean geodesic error {ours_error:.4f} sqrt(area), flip rate {ours_flips:.3f}")
    print(f"  final loss {result.history[-1]['loss']:.4f} after {len(result.history)} steps")

    assert a.embedding.shape == (941, 128) and np.allclose(np.linalg.norm(b.embedding, axis=1), 1, atol=1e-5)
    # measured (seed 0, 600 steps): base 0.214 / 0.093, ours 0.023 / 0.007 — 9x and 13x better;
    # the asserted 3x leaves room for other platforms' float results, not for a method that fails
    assert base_error > 0.12 and base_flips > 0.05, "the base features are not as weak as measured: check the data"
    assert ours_error < base_error / 3
    assert ours_flips < base_flips / 3
