"""How the rest-pose prior behaves when the two characters are NOT posed alike.

The quaternius man (at rest) is matched to the woman with both upper arms turned about the forward axis by
an angle (raised towards a T-pose, or lowered), with surface features (geometric, 300 test-time steps), with
and without the prior (weight 0.2, as the add-on). Score: the share of the woman's vertices whose match
lies on a man's vertex of the same bone (dominant skin weight), over all vertices and over the forearms and
hands (the parts that moved).

Run: python bench/bench_rest_prior.py. Needs bpy and the shared data.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "backend"), str(REPO), str(REPO / "tests")]
ARM_PARTS = ("LowerArm", "Palm", "MiddleHand", "Fingers", "Thumb")


def arms_turned(character, degrees: float) -> np.ndarray:
    """World-space skin with both upper arms turned by ``degrees`` about world Y (positive: raised)."""
    from sa3df.core.orient import rotation_about
    from sa3df.motion.skinning import pose_rig

    names = character.rig.bone_names
    local = np.tile(np.eye(4), (1, character.rig.n_bones, 1, 1))
    for side, sign in (("L", -1), ("R", 1)):
        bone = names.index(f"UpperArm.{side}")
        rest = character.rig.rest_matrices[bone, :3, :3]
        local[0, bone, :3, :3] = rest.T @ rotation_about(1, np.radians(sign * degrees)) @ rest
    vertices, _ = pose_rig(character.rig, local)
    return vertices[0] @ character.world[:3, :3].T + character.world[:3, 3]


def main() -> None:
    from blender_scene import sandbox_blender_user

    sandbox_blender_user("sa3df-bench-")
    import torch

    from conftest import find_data_dir
    from motion_scenes import load_character
    from sa3df.apps import match
    from sa3df.core import mesh
    from sa3df.service.motion_jobs import REST_PRIOR
    from sa3df.features.pipeline import compute_surface_features
    from sa3df.features.settings import FeatureSettings

    torch.set_num_threads(1)
    data = find_data_dir()
    if data is None:
        sys.exit("shared data not found: set SA3DF_DATA")
    man = load_character(str(data / "humanoids/quaternius_male_casual.fbx"))
    woman = load_character(str(data / "humanoids/quaternius_female_casual.fbx"))
    man_bone = np.array(man.rig.bone_names)[man.rig.weights.argmax(1)]
    woman_bone = np.array(woman.rig.bone_names)[woman.rig.weights.argmax(1)]
    arm = np.array([name.startswith(ARM_PARTS) for name in woman_bone])
    print("man at rest -> woman with her upper arms turned; share of her vertices matched to the same bone")
    print(f"{'arms turned':>12s} {'all, no prior':>14s} {'all, prior':>11s} {'arms, no prior':>15s} {'arms, prior':>12s}")
    for degrees in (-30, 0, 30, 60):
        meshes = [mesh.from_arrays(man.rest_world, man.rig.faces, name="man"),
                  mesh.from_arrays(arms_turned(woman, degrees), woman.rig.faces, name="woman")]
        result = compute_surface_features(meshes, FeatureSettings(steps=300, up_axis="z"))
        row = []
        for prior in (0.0, REST_PRIOR):
            matches, _, _ = match.input_vertex_matches(*meshes, *(f.embedding for f in result.features),
                                                       rest_prior=prior, up="z")
            row.append(man_bone[matches] == woman_bone)
        print(f"{degrees:>10d}° {row[0].mean():14.3f} {row[1].mean():11.3f} {row[0][arm].mean():15.3f} "
              f"{row[1][arm].mean():12.3f}")


if __name__ == "__main__":
    main()
