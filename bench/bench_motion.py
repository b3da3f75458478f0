"""Motion transfer benchmark: fit time for a 250-frame clip on a ~4k-vertex target, and transfer accuracy
against a name-agnostic baseline.

1. Speed: the quaternius fox's actions played back to back (250 frames) transferred onto the wolf
   (3,994 vertices, 51 bones). The loss samples 800 target vertices (by match confidence) plus up to 800
   mesh edges; residuals are then measured on all vertices. Reports the closed-form start alone and the
   full fit (two 40-step passes each followed by space-time re-matching, then 200 steps).
2. Job speed (``--only job``): what one Transfer Motion costs at the issue's size, the man's walk looped to
   250 frames onto the woman subdivided to ~5k vertices: correspondence (surface features, 300 steps) plus
   the fit, CPU and wall seconds (goal: under 30 s on 2 CPU cores).
3. Accuracy: man -> woman walk (same skeleton, so copying the man's pose is the ground truth): mean joint
   error / height of the feature-based transfer (as the add-on's job matches: with the rest-pose proximity
   prior, and without it), of a geometric stand-in correspondence (nearest rest vertex after box
   normalisation), and of the nearest-bone-by-rest-position baseline.
4. Contacts: per pair, foot sliding, floor penetration and float, the largest per-frame bone turn, time.

Run: python bench/bench_motion.py [--threads N] [--skip-features]. Needs bpy and the shared data.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "backend"), str(REPO), str(REPO / "tests")]


def clip_of_actions(path: Path, frames_wanted: int):
    """The character with its actions played back to back until ``frames_wanted`` frames."""
    import bpy

    from blender_scene import import_character
    from motion_scenes import Character
    from sa3df_addon import rig_io

    armature, _ = import_character(path)
    rig = rig_io.rig_from_objects(armature)
    armature.animation_data_create()
    clips = []
    for action in sorted(bpy.data.actions, key=lambda a: a.name):
        armature.animation_data.action = action
        if hasattr(armature.animation_data, "action_slot") and action.slots:
            armature.animation_data.action_slot = action.slots[0]
        clips.append(rig_io.source_clip(armature, rig_io.moved_meshes(armature), rig_io.action_frames(action)))
        if sum(map(len, clips)) >= frames_wanted:
            break
    clip = np.concatenate(clips)[:frames_wanted]
    world = np.array(armature.matrix_world)
    rest = rig.rest_vertices @ world[:3, :3].T + world[:3, 3]
    return Character(rig, world, list(range(len(clip))), clip, None, rest)


def speed(data: Path, frames: int, with_features: bool) -> None:
    from motion_scenes import load_character, nearest_rest_correspondence
    from sa3df.motion.fit import MotionConfig, fit_motion
    from sa3df.motion.rig import place_in_armature

    fox = clip_of_actions(data / "quadrupeds/quaternius_fox.glb", frames)
    wolf = load_character(str(data / "quadrupeds/quaternius_wolf.glb"))
    matches, weights = nearest_rest_correspondence(fox, wolf)
    placed = place_in_armature(fox.clip, wolf.world, fox.origin)
    print(f"speed: fox clip {placed.shape[0]} frames x {placed.shape[1]} vertices -> wolf "
          f"{wolf.rig.n_vertices} vertices, {wolf.rig.n_bones} bones")
    fit_motion(wolf.rig, placed[:4], matches, weights, MotionConfig(iterations=2))  # warm-up (imports)
    runs = (("closed-form start only", dict(iterations=0, rematch_rounds=0)),
            ("full fit (2x40 + 200 Adam steps)", {}))
    for label, settings in runs:
        start = time.perf_counter()
        result = fit_motion(wolf.rig, placed, matches, weights, MotionConfig(placement="origin", up=wolf.up, **settings))
        took = time.perf_counter() - start
        r = result.normalized_residuals
        print(f"  {label:34s} {took:6.1f} s  ({1000 * took / len(placed):5.1f} ms/frame)  residual / size: "
              f"mean {r.mean():.4f}, max {r.max():.4f}")
    if with_features:
        from test_motion_transfer import feature_correspondence

        start = time.perf_counter()
        feature_correspondence(fox, wolf)
        took = time.perf_counter() - start
        print(f"  {'correspondence (features, 300 steps)':34s} {took:6.1f} s  (fox {fox.rig.n_vertices} + wolf "
              f"{wolf.rig.n_vertices} vertices; the full fit above plus this is one Transfer Motion)")


def subdivided(character, wanted: int):
    """The character with its rig's triangles split 4-to-1 (weights interpolated) until >= ``wanted`` vertices."""
    import dataclasses

    import trimesh

    from motion_scenes import Character

    rig = character.rig
    vertices, faces, weights = rig.rest_vertices, rig.faces, rig.weights
    while len(vertices) < wanted:
        vertices, faces, extra = trimesh.remesh.subdivide(vertices, faces, vertex_attributes={"w": weights})
        weights = extra["w"]
    rig = dataclasses.replace(rig, rest_vertices=vertices, faces=faces, weights=weights)
    w = character.world
    return Character(rig, w, [], None, None, vertices @ w[:3, :3].T + w[:3, 3])


def looped(character, frames: int):
    """The character's clip played back to back until ``frames`` frames (a walk cycle: seamless)."""
    from motion_scenes import Character

    repeat = -(-frames // len(character.frames))
    clip = np.concatenate([character.clip] * repeat)[:frames]
    return Character(character.rig, character.world, list(range(frames)), clip, None, character.rest_world)


def job_speed(data: Path, frames: int, vertices: int) -> None:
    """What one Transfer Motion costs at the issue's size: correspondence (surface features, the job's
    settings) plus the fit of a ``frames``-frame clip onto a ``vertices``-vertex target, CPU and wall."""
    from test_motion_transfer import MAN, WOMAN, feature_correspondence, transfer

    from motion_scenes import load_character

    man = looped(load_character(str(data / MAN), "Walk"), frames)
    woman = subdivided(load_character(str(data / WOMAN)), vertices)
    print(f"job speed: man walk looped to {frames} frames ({man.rig.n_vertices} vertices) -> woman subdivided to "
          f"{woman.rig.n_vertices} vertices, {woman.rig.n_bones} bones")
    times = {}
    for label, run in (("correspondence (features, 300 steps)", lambda: feature_correspondence(man, woman)),
                       ("fit (2x40 + 200 Adam steps)", lambda: transfer(man, woman, *matches, up=woman.up))):
        wall, cpu = time.perf_counter(), time.process_time()
        out = run()
        times[label] = (time.perf_counter() - wall, time.process_time() - cpu)
        matches = out if isinstance(out, tuple) else None
        print(f"  {label:38s} wall {times[label][0]:6.1f} s, CPU {times[label][1]:6.1f} s")
    wall, cpu = (sum(t[i] for t in times.values()) for i in (0, 1))
    print(f"  {'total (goal < 30 s)':38s} wall {wall:6.1f} s, CPU {cpu:6.1f} s")


def accuracy(data: Path, with_features: bool) -> None:
    from test_motion_transfer import (
        MAN, WOMAN, centred_joint_error, feature_correspondence, nearest_bone_baseline, transfer,
    )

    from motion_scenes import load_character, nearest_rest_correspondence, posed_world

    man, woman = load_character(str(data / MAN), "Walk"), load_character(str(data / WOMAN))
    _, truth = posed_world(woman, man.basis)
    rows = []
    if with_features:
        for label, prior in (("features + rest prior (job default)", None), ("features, no rest prior", 0.0)):
            start = time.perf_counter()
            matches, weights = feature_correspondence(man, woman, prior)
            rows.append((label, matches, weights, time.perf_counter() - start))
    matches, weights = nearest_rest_correspondence(man, woman)
    rows.append(("nearest rest vertex (stand-in)", matches, weights, 0.0))
    print(f"accuracy: man -> woman walk, {len(man.frames)} frames; mean joint error / height vs copied pose "
          "(all skinned bones | bones with >= 1 % of the skin); features: geometric, 300 test-time steps")

    def errors(joints) -> str:
        every = centred_joint_error(woman, joints, truth)
        major = centred_joint_error(woman, joints, truth, major_only=True)
        return f"{100 * every:5.2f} % | {100 * major:5.2f} %"

    for label, matches, weights, feature_time in rows:
        start = time.perf_counter()
        result = transfer(man, woman, matches, weights)
        _, joints = posed_world(woman, result.local_matrices())
        took = time.perf_counter() - start
        extra = f", correspondence {feature_time:.0f} s" if feature_time else ""
        print(f"  transfer, {label:40s} {errors(joints)}  (fit {took:.1f} s{extra})")
    _, baseline = posed_world(woman, nearest_bone_baseline(man, woman))
    print(f"  baseline, {'nearest bone by rest position':40s} {errors(baseline)}")


PAIRS = (("man -> woman", "humanoids/quaternius_male_casual.fbx", "humanoids/quaternius_female_casual.fbx"),
         ("man -> animated human", "humanoids/quaternius_male_casual.fbx", "humanoids/quaternius_animated_human.fbx"),
         ("horse -> cow", "quadrupeds/quaternius_horse.fbx", "quadrupeds/quaternius_cow.fbx"),
         ("fox -> wolf", "quadrupeds/quaternius_fox.glb", "quadrupeds/quaternius_wolf.glb"),
         ("man -> robot (rigid pieces)", "humanoids/quaternius_male_casual.fbx", "robot"))


def robot_character():
    """The tests' robot (tests/robot_rig.py): 14 bone-parented boxes and one skinned mesh of the hands."""
    from blender_scene import reset_scene
    from motion_scenes import character_of
    from robot_rig import build_robot

    reset_scene()
    armature, _ = build_robot("Robot", pieces="rigid", walk=False)
    return character_of(armature)


def contact_row(label, source, target, matches, weights, with_truth: bool, **config) -> None:
    """One pair's walk transfer: contact quality of the target against the source's own, and time."""
    from test_motion_transfer import centred_joint_error, transfer

    from motion_scenes import posed_world
    from sa3df.motion.contacts import floor_report, rotation_jumps
    from sa3df.motion.rotations import quaternion_from_matrix

    start = time.perf_counter()
    result = transfer(source, target, matches, weights, up=target.up, **config)
    took = time.perf_counter() - start
    verts, joints = posed_world(target, result.local_matrices())
    z = (0.0, 0.0, 1.0)
    mine = floor_report(verts, z, target.rest_world[:, 2].min(), target.height)
    theirs = floor_report(source.clip, z, source.rest_world[:, 2].min(), source.height)
    jump = rotation_jumps(result.rotations).max()
    source_jump = rotation_jumps(quaternion_from_matrix(source.basis[..., :3, :3])).max()
    truth = ""
    if with_truth:
        _, expected = posed_world(target, source.basis)
        truth = f", joint error {100 * centred_joint_error(target, joints, expected):.2f} %"
    pct = lambda key: f"{100 * mine[key + '_max']:4.2f}/{100 * mine[key + '_mean']:4.2f}"  # noqa: E731
    print(f"  {label:28s} sliding {100 * mine['sliding']:5.3f} vs source {100 * theirs['sliding']:5.3f}"
          f"{per_leg(mine['sliding'], theirs['sliding'], target, source)}, against the ground "
          f"{100 * mine['ground_sliding']:5.3f} vs {100 * theirs['ground_sliding']:5.3f} | "
          f"penetration {pct('penetration')} | float {pct('float')} (source {100 * theirs['penetration_max']:.2f}/"
          f"{100 * theirs['float_max']:.2f}) | jump {jump:4.1f} deg (source {source_jump:4.1f}){truth} | "
          f"fit {took:.1f} s, {len(source.frames)} frames")


def per_leg(target_sliding: float, source_sliding: float, target, source) -> str:
    """The sliding per leg length (hip height) instead of height, where both rigs' leg chains reach the hips
    (over a quarter of the height; IK feet end the fox's chains at their controls): an in-place walk's
    planted feet keep a treadmill's speed, which grows with the legs."""
    legs = (target.leg_length / target.height, source.leg_length / source.height)
    if min(legs) < 0.25:
        return ""
    return f" (per leg length {100 * target_sliding / legs[0]:5.3f} vs {100 * source_sliding / legs[1]:5.3f})"


def contacts(data: Path, with_features: bool, only: str | None = None, **config) -> None:
    from motion_scenes import load_character, nearest_rest_correspondence

    kind = "surface features (geometric, 300 steps, rest prior)" if with_features else "nearest rest vertex"
    print(f"contacts: walk transfers, correspondence {kind}; sliding = mean speed of planted vertices, % of height "
          "(and of hip height) per frame, and against the ground (less the clip's median planted step: a treadmill); penetration / float of each frame's lowest point vs the target's rest floor, % of height, "
          "max/mean; jump = largest per-frame local bone rotation change")
    for label, source_path, target_path in PAIRS:
        if only and only not in label:
            continue
        source = load_character(str(data / source_path), "Walk")
        target = robot_character() if target_path == "robot" else load_character(str(data / target_path))
        if with_features:
            from test_motion_transfer import feature_correspondence

            matches, weights = feature_correspondence(source, target)
        else:
            matches, weights = nearest_rest_correspondence(source, target)
        contact_row(label, source, target, matches, weights, with_truth=label == "man -> woman", **config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy machine)")
    parser.add_argument("--skip-features", action="store_true", help="skip the feature training (~40 s)")
    parser.add_argument("--only", choices=("speed", "job", "accuracy", "contacts"), help="run one part")
    parser.add_argument("--job-vertices", type=int, default=5000, help="job part: target vertices (subdivided)")
    parser.add_argument("--pair", help="contacts part: only the pairs whose label contains this")
    parser.add_argument("--contact-weight", type=float, help="MotionConfig.contact_weight for the contacts part")
    args = parser.parse_args()

    from blender_scene import sandbox_blender_user

    sandbox_blender_user("sa3df-bench-")
    import torch

    from conftest import find_data_dir

    torch.set_num_threads(args.threads)
    data = find_data_dir()
    if data is None:
        sys.exit("shared data not found: set SA3DF_DATA")
    print(f"torch {torch.__version__}, {args.threads} CPU thread(s)")
    if args.only in (None, "speed"):
        speed(data, args.frames, not args.skip_features)
    if args.only in (None, "job"):
        job_speed(data, args.frames, args.job_vertices)
    if args.only in (None, "accuracy"):
        accuracy(data, not args.skip_features)
    if args.only in (None, "contacts"):
        extra = {} if args.contact_weight is None else {"contact_weight": args.contact_weight}
        contacts(data, not args.skip_features, args.pair, **extra)


if __name__ == "__main__":
    main()
