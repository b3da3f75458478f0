"""Done means: trained on two walk-cycle frames of a real character, the surface-aware features
match frame A to frame B better than the base features they were trained from.

The quaternius man (941 vertices, 940 after welding a seam copy; several components: body, eyes...)
is posed by Blender at frames of its Walk action; faces are shared, so the ground truth
correspondence is the input vertex index.
"""

import numpy as np
import pytest

from sa3df.apps.evaluate import flip_rate, geodesic_errors, mirrored_ground_truth
from sa3df.apps.match import nearest_neighbors
from sa3df.core.mesh import from_arrays
from sa3df.features.pipeline import compute_surface_features
from sa3df.features.settings import FeatureSettings

pytestmark = pytest.mark.blender

# Measured with seed 0 and 600 steps:
#   1 -> 9:  base error 0.213 / flips 0.091, ours 0.024 / 0.008 (9x and 11x better).
#   5 -> 17: base error 0.300 / flips 0.170, ours about 0.16 / 0.145: the legs trade places between
#            these frames and the geometric base features (intrinsic signatures blind to left/right,
#            plus pose-dependent xyz) send the feet to the wrong side; training roughly halves the
#            error but hardly changes the flips. A known limit of these base features (heavy test).
PAIRS = [(1, 9), (5, 17)]


@pytest.fixture(scope="module")
def walk(data_dir):
    """(rest (N,3), faces (T,3), {frame: world-space vertices (N,3)}) from Blender."""
    pytest.importorskip("bpy")
    import blender_scene
    from sa3df_addon.mesh_io import mesh_arrays

    armature, meshes = blender_scene.import_character(data_dir / "humanoids" / "quaternius_male_casual.fbx")
    body = meshes[0]
    rest, faces = mesh_arrays(body, evaluated=False)
    blender_scene.set_action(armature, "Walk")
    frames = sorted({f for pair in PAIRS for f in pair})
    return rest, faces, {f: blender_scene.posed_vertices(body, f) for f in frames}


def _scores(source, target, query_features, reference_features, mirror):
    """Mean geodesic error and flip rate of nearest-neighbour matches source -> target. The truth is
    the input vertex index (cleaning may weld seam copies, so map through input ids)."""
    truth = target.input_to_clean[source.input_index]
    mirrored = target.input_to_clean[mirror[source.input_index]]
    predicted, _ = nearest_neighbors(query_features, reference_features)
    errors = geodesic_errors(target, predicted, truth)
    return float(errors.mean()), float(flip_rate(target, predicted, truth, mirrored))


def _train_and_score(walk, frame_a, frame_b):
    rest, faces, posed = walk
    va, vb = posed[frame_a], posed[frame_b]
    assert len(rest) == 941 and np.abs(va - vb).max() > 1.0, "the two frames must differ clearly in pose"
    mesh_a, mesh_b = from_arrays(va, faces, name="walk_a"), from_arrays(vb, faces, name="walk_b")
    mirror = mirrored_ground_truth(rest, faces, axis=0)  # input ids; the character's left/right axis is x

    settings = FeatureSettings(steps=600, seed=0, device="cpu", training={"cpu_threads": 1})
    result = compute_surface_features([mesh_a, mesh_b], settings)
    a, b = result.features
    base_error, base_flips = _scores(mesh_a, mesh_b, a.base, b.base, mirror)
    ours_error, ours_flips = _scores(mesh_a, mesh_b, a.embedding, b.embedding, mirror)
    print(f"\nwalk frame {frame_a} -> {frame_b}, nearest neighbour, {mesh_a.n_vertices} vertices")
    print(f"  base (geometric, 54-d): mean geodesic error {base_error:.4f} sqrt(area), flip rate {base_flips:.3f}")
    print(f"  surface-aware (128-d):  mean geodesic error {ours_error:.4f} sqrt(area), flip rate {ours_flips:.3f}")
    print(f"  final loss {result.history[-1]['loss']:.4f} after {len(result.history)} steps")

    assert a.embedding.shape == (mesh_a.n_vertices, 128)
    assert np.allclose(np.linalg.norm(b.embedding, axis=1), 1, atol=1e-5)
    return base_error, base_flips, ours_error, ours_flips


def test_surface_features_beat_base_features_between_walk_frames(walk):
    base_error, base_flips, ours_error, ours_flips = _train_and_score(walk, *PAIRS[0])
    assert base_error > 0.12 and base_flips > 0.05, "the base features are not as weak as measured: check the data"
    # 3x sits well inside the measured 9x / 11x: room for other platforms' floats, not for failure
    assert ours_error < base_error / 3
    assert ours_flips < base_flips / 3


@pytest.mark.heavy
def test_swapped_legs_error_drops_but_flips_stay(walk):
    base_error, base_flips, ours_error, ours_flips = _train_and_score(walk, *PAIRS[1])
    assert ours_error < base_error / 1.5
    assert ours_flips <= base_flips
