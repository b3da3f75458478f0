"""Characters from the shared data as arrays for the motion tests: rig, world transform, and a clip of an
action's deformed vertices and pose-bone matrices. Imports through bpy; cached per test session."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Character:
    """One imported character. ``rig`` is in armature space; ``world`` is the armature's matrix_world;
    ``clip`` (T, N, 3) world-space deformed vertices at ``frames`` and ``basis`` (T, B, 4, 4) the pose-bone
    matrices there (None without an action); ``rest_world`` (N, 3) the rest skin in world space."""

    rig: object
    world: np.ndarray
    frames: list
    clip: np.ndarray | None
    basis: np.ndarray | None
    rest_world: np.ndarray

    @property
    def origin(self) -> np.ndarray:
        return self.world[:3, 3]

    @property
    def up(self) -> tuple:
        """World Z (up) in the armature's space, as the add-on's job gets it."""
        return tuple(np.linalg.inv(self.world)[:3, :3] @ np.array([0.0, 0.0, 1.0]))

    @property
    def height(self) -> float:
        """World-space vertical extent of the rest skin (Z up)."""
        return float(np.ptp(self.rest_world[:, 2]))

    @property
    def leg_length(self) -> float:
        """Hip height at rest: the highest joint (world Z, above the skin's floor) of the chains that carry the
        skin near the floor (:func:`sa3df.motion.contacts.leg_bones`; no bone names). An in-place walk's
        planted feet move at a speed in proportion to it. (Where IK bones carry the feet, as on the fox, the
        chain ends at them: then it is their height, not the hips'.)"""
        from sa3df.motion.contacts import leg_bones

        z = self.rest_world[:, 2] - self.rest_world[:, 2].min()
        skin = (self.rig.weights[z < 0.05 * self.height] > 0.3).sum(axis=0)
        heads = self.rig.rest_matrices[:, :4, 3] @ self.world.T  # (B, 4) bone heads, world
        return float(heads[leg_bones(self.rig, skin), 2].max() - self.rest_world[:, 2].min())


@functools.lru_cache(maxsize=16)
def load_character(path: str, action: str | None = None, max_frames: int | None = None) -> Character:
    from blender_scene import import_character

    armature, _ = import_character(Path(path))
    return character_of(armature, action, max_frames)


def character_of(armature, action: str | None = None, max_frames: int | None = None) -> Character:
    """The character of an armature in the scene, with the clip of its action named like ``action``."""
    import bpy

    from blender_scene import set_action
    from sa3df_addon import rig_io

    rig = rig_io.rig_from_objects(armature)
    world = np.array(armature.matrix_world, dtype=np.float64)
    rest_world = rig.rest_vertices @ world[:3, :3].T + world[:3, 3]
    if action is None:
        return Character(rig, world, [], None, None, rest_world)
    act = set_action(armature, action)
    frames = rig_io.action_frames(act)[:max_frames]
    clip = rig_io.source_clip(armature, rig_io.moved_meshes(armature), frames)
    basis = []
    for frame in frames:
        bpy.context.scene.frame_set(frame)
        basis.append(rig_io.pose_basis(armature, rig))
    return Character(rig, world, frames, clip, np.array(basis), rest_world)


def nearest_rest_correspondence(source: Character, target: Character) -> tuple[np.ndarray, np.ndarray]:
    """Crude stand-in for feature matching (tests only): each target rest vertex's nearest source rest
    vertex after normalising both by bounding box, trying the four quarter turns about Z (characters may
    face different ways) and keeping the closest; confidence is a Gaussian of the distance."""
    from scipy.spatial import cKDTree

    def normalise(v):
        return (v - (v.min(0) + v.max(0)) / 2) / np.linalg.norm(np.ptp(v, axis=0))

    tree = cKDTree(normalise(source.rest_world))
    best = None
    for quarter in range(4):
        c, s = np.cos(quarter * np.pi / 2), np.sin(quarter * np.pi / 2)
        turned = target.rest_world @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]).T
        distance, index = tree.query(normalise(turned))
        if best is None or distance.mean() < best[0].mean():
            best = distance, index
    distance, index = best
    return index, np.exp(-((distance / 0.03) ** 2))


def posed_world(character: Character, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World-space (vertices (T, N, 3), bone heads (T, B, 3)) of the character's rig for basis matrices."""
    from sa3df.motion.skinning import pose_rig

    verts, heads = pose_rig(character.rig, local)
    w = character.world
    return verts @ w[:3, :3].T + w[:3, 3], heads @ w[:3, :3].T + w[:3, 3]
