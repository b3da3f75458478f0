"""Render the README's motion-transfer strip, headless (Workbench, bpy module).

    python scripts/render_motion_strip.py [--data ../shared/data] [--out docs/images] [--tile 256]
                                          [--columns 5] [--steps 300] [--fit-cache fit.npz] [--threads 1]

Imports the Quaternius man (its walk) and the Quaternius animated human (a different, Mixamo-style
skeleton; CC0 both), then transfers the walk in process with the pieces the add-on uses:
``rig_io.rig_from_objects`` for the rigs, surface features (geometric extractor, test-time trained) and
``sa3df.apps.match.correspondence`` for the matching, ``sa3df.motion.fit.fit_motion`` (origin placement, height
ratio of the rest skins, the target keeps its heading) and ``rig_io.bake_motion`` for the new action.

- ``motion_transfer.png``: top row the man at ``--columns`` frames spread over the walk cycle, bottom row
  the human at the same frames of the transferred action;
- ``motion_transfer_before.png``: the two characters at rest, side by side;
- with ``--matching nearest-rest``, ``motion_transfer_nearest_rest.png``: the same strip with the motion
  tests' geometric stand-in for the matching (nearest rest-pose points), to tell fit from matching errors.

``--fit-cache`` keeps the fitted rotations/locations in an .npz (reused when it exists): handy when only
the picture changes.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "backend"), str(REPO / "tests")]

from blender_scene import sandbox_blender_user  # noqa: E402

sandbox_blender_user("sa3df-strip-")
import bpy  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import blender_scene  # noqa: E402
from sa3df_addon import rig_io  # noqa: E402
from sa3df_addon.mesh_io import mesh_arrays  # noqa: E402

SOURCE_COLOR = (0.42, 0.52, 0.66, 1.0)  # blue-grey
TARGET_COLOR = (0.93, 0.55, 0.22, 1.0)  # warm orange
BACKGROUND = (0.97, 0.97, 0.97)


def import_character(path: Path):
    """Import a character without clearing the scene; returns (armature, body mesh, its actions)."""
    before_objects, before_actions = set(bpy.data.objects), set(bpy.data.actions)
    armature, body = blender_scene.add_character(path)
    for obj in set(bpy.data.objects) - before_objects:  # only the body is rendered
        obj.hide_render = obj is not body
    return armature, body, [a for a in bpy.data.actions if a not in before_actions]


def assign(armature, action) -> None:
    anim = armature.animation_data or armature.animation_data_create()
    anim.action = action
    if action is not None and hasattr(anim, "action_slot") and action.slots:
        anim.action_slot = action.slots[0]


def to_rest_pose(armature) -> None:
    assign(armature, None)
    for bone in armature.pose.bones:
        bone.rotation_quaternion = (1, 0, 0, 0)
        bone.rotation_euler = (0, 0, 0)
        bone.location = (0, 0, 0)
        bone.scale = (1, 1, 1)
    bpy.context.view_layer.update()


def world_rest(rig, armature) -> np.ndarray:
    world = np.array(armature.matrix_world, dtype=np.float64)
    return rig.rest_vertices @ world[:3, :3].T + world[:3, 3]


def size_of(vertices: np.ndarray) -> float:
    """Height along Z, as the add-on scales the source to the target."""
    return float(np.ptp(vertices[:, 2]))


def feature_matches(source_rest, source_faces, target_rest, target_faces, steps: int):
    """Target -> source vertex matches and confidences from surface features, as the worker job does."""
    from sa3df.apps import match
    from sa3df.core import mesh
    from sa3df.service.motion_jobs import REST_PRIOR
    from sa3df.features.pipeline import compute_surface_features
    from sa3df.features.settings import FeatureSettings

    meshes = [mesh.from_arrays(source_rest, source_faces, name="source"),
              mesh.from_arrays(target_rest, target_faces, name="target")]
    result = compute_surface_features(meshes, FeatureSettings(steps=steps, up_axis="z"))  # they face different ways
    matches, weights, _ = match.input_vertex_matches(*meshes, *(f.embedding for f in result.features),
                                                     rest_prior=REST_PRIOR, up="z")
    return matches, weights


def nearest_rest_matches(source_rest, target_rest):
    """The motion tests' crude stand-in for feature matching (``tests/motion_scenes.py``): each target rest
    vertex's nearest source rest vertex after bounding-box normalisation, best of four quarter turns."""
    from types import SimpleNamespace

    sys.path.insert(0, str(REPO / "tests"))
    from motion_scenes import nearest_rest_correspondence

    return nearest_rest_correspondence(SimpleNamespace(rest_world=source_rest), SimpleNamespace(rest_world=target_rest))


def transfer(man, human, walk, steps: int, fit_cache: Path | None, matching: str = "features"):
    """Fit the human's rig to the man's walk and bake it as a new action; returns (action, frames, info)."""
    from types import SimpleNamespace

    from sa3df.motion.fit import MotionConfig, fit_motion

    assign(man, walk)
    frames = rig_io.action_frames(walk)
    source_rig = rig_io.rig_from_objects(man)
    target_rig = rig_io.rig_from_objects(human)
    source_rest, target_rest = world_rest(source_rig, man), world_rest(target_rig, human)
    info = {}
    if fit_cache and fit_cache.exists():
        saved = np.load(fit_cache)
        result = SimpleNamespace(bone_names=target_rig.bone_names, rotations=saved["rotations"],
                                 locations=saved["locations"])
        info["fit"] = f"reused {fit_cache}"
    else:
        started = time.perf_counter()
        if matching == "features":
            matches, weights = feature_matches(source_rest, source_rig.faces, target_rest, target_rig.faces, steps)
        else:
            matches, weights = nearest_rest_matches(source_rest, target_rest)
        info["matching_s"] = time.perf_counter() - started
        clip = rig_io.source_clip(man, rig_io.moved_meshes(man), frames, into=human, align_origins=True)
        up = np.linalg.inv(np.array(human.matrix_world, dtype=np.float64))[:3, :3] @ (0.0, 0.0, 1.0)
        config = MotionConfig(placement="origin", scale=size_of(target_rest) / size_of(source_rest),
                              fit_scale=False, up=tuple(float(x) for x in up), device="cpu")
        started = time.perf_counter()
        result = fit_motion(target_rig, clip, matches, weights, config)
        info["fit_s"] = time.perf_counter() - started
        info["mean_residual"] = float(result.normalized_residuals.mean())
        if fit_cache:
            np.savez(fit_cache, rotations=result.rotations, locations=result.locations)
    action = rig_io.bake_motion(human, result, frames, f"{walk.name} → {human.name}")
    return action, frames, info, source_rest, target_rest


def facing_yaw(source_rest: np.ndarray, target_rest: np.ndarray) -> float:
    """Yaw (radians, about world Z) that turns the target's rest skin to face the way the source's does:
    the best planar rotation between the two bounding-box-normalised skins over nearest points, tried
    from the four quarter turns (only used to point the camera at both characters from the same side)."""
    from scipy.spatial import cKDTree

    def normalise(v):
        return (v - (v.min(0) + v.max(0)) / 2) / np.ptp(v[:, 2])

    src, tgt = normalise(source_rest), normalise(target_rest)
    tree = cKDTree(src)
    best = None
    for quarter in range(4):
        angle = quarter * math.pi / 2
        c, s = math.cos(angle), math.sin(angle)
        turned = tgt @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]).T
        distance, _ = tree.query(turned)
        if best is None or distance.mean() < best[0]:
            best = distance.mean(), angle
    return best[1]


def setup_scene(tile: int):
    scene = bpy.context.scene
    scene.render.engine = "BLENDER_WORKBENCH"
    shading = scene.display.shading
    shading.light, shading.color_type = "STUDIO", "OBJECT"
    shading.show_shadows = shading.show_cavity = False
    scene.render.film_transparent = False
    scene.render.resolution_x = scene.render.resolution_y = tile
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    world = scene.world or bpy.data.worlds.new("StripWorld")
    scene.world = world
    world.color = BACKGROUND
    scene.view_settings.view_transform = "Standard"
    camera = bpy.data.objects.new("StripCamera", bpy.data.cameras.new("StripCamera"))
    scene.collection.objects.link(camera)
    camera.data.type = "ORTHO"
    scene.camera = camera
    return camera


def render_tile(body, others, camera, azimuth: float, height: float, floor_z: float, path: Path) -> np.ndarray:
    """Render ``body`` alone (``others`` hidden) with an orthographic 3/4 camera at ``azimuth`` (radians,
    world Z) showing 1.2 x ``height``, its floor at ``floor_z``; returns the (H, W, 3) picture, top row first."""
    for obj in others:
        obj.hide_render = True
    body.hide_render = False
    points = mesh_arrays(body, evaluated=True)[0]
    centre = np.array([*((points[:, :2].min(0) + points[:, :2].max(0)) / 2), floor_z + 0.5 * height])
    elevation = math.radians(12)
    view = np.array([math.cos(elevation) * math.sin(azimuth), -math.cos(elevation) * math.cos(azimuth),
                     math.sin(elevation)])  # from the centre towards the camera
    camera.location = tuple(centre + 10 * height * view)
    camera.rotation_euler = (math.pi / 2 - elevation, 0.0, azimuth)
    camera.data.ortho_scale = 1.2 * height
    camera.data.clip_end = 30 * height
    scene = bpy.context.scene
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(str(path))
    size = image.size
    pixels = np.array(image.pixels[:], dtype=np.float32).reshape(size[1], size[0], 4)[::-1, :, :3]
    bpy.data.images.remove(image)
    path.unlink()
    return pixels


def save_png(picture: np.ndarray, path: Path, labels: list[tuple[int, int, str]] = ()) -> None:
    from PIL import Image, ImageDraw

    image = Image.fromarray((np.clip(picture, 0, 1) * 255 + 0.5).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for x, y, text in labels:
        draw.text((x, y), text, fill=(60, 60, 60))
    image = image.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    image.save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("SA3DF_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--columns", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300, help="test-time training steps of the features")
    parser.add_argument("--fit-cache", type=Path, default=None)
    parser.add_argument("--matching", choices=["features", "nearest-rest"], default="features",
                        help="features: what the add-on does; nearest-rest: the tests' geometric baseline "
                             "(written to motion_transfer_nearest_rest.png)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 measured fastest on 2 shared cores: features 25 s vs 90 s)")
    args = parser.parse_args()
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    humans = args.data / "humanoids"
    man, man_body, man_actions = import_character(humans / "quaternius_male_casual.fbx")
    human, human_body, _ = import_character(humans / "quaternius_animated_human.fbx")
    walk = next(a for a in man_actions if "Walk" in a.name)
    to_rest_pose(human)
    man_body.color, human_body.color = SOURCE_COLOR, TARGET_COLOR

    # Before: both characters at rest (the man too), each from the same 3/4 side.
    assign(man, None)
    to_rest_pose(man)
    source_rig, target_rig = rig_io.rig_from_objects(man), rig_io.rig_from_objects(human)
    source_rest, target_rest = world_rest(source_rig, man), world_rest(target_rig, human)
    yaw = facing_yaw(source_rest, target_rest)
    base_azimuth = math.radians(35)  # the man faces -Y: camera in front, 35 degrees to his left
    camera = setup_scene(args.tile)
    heights = {man_body: float(np.ptp(source_rest[:, 2])), human_body: float(np.ptp(target_rest[:, 2]))}
    floors = {man_body: float(source_rest[:, 2].min()), human_body: float(target_rest[:, 2].min())}
    azimuths = {man_body: base_azimuth, human_body: base_azimuth - yaw}
    bodies = [man_body, human_body]
    tmp = Path(blender_scene.scratch_dir("sa3df-strip-tiles-"))
    args.out.mkdir(parents=True, exist_ok=True)

    def tile(body, name):
        return render_tile(body, [b for b in bodies if b is not body], camera, azimuths[body], heights[body],
                           floors[body], tmp / f"{name}.png")

    before = np.concatenate([tile(b, f"rest{i}") for i, b in enumerate(bodies)], axis=1)
    save_png(before, args.out / "motion_transfer_before.png",
             [(6, 4, "source: Quaternius man"), (args.tile + 6, 4, "target: animated human (other skeleton)")])

    action, frames, info, _, _ = transfer(man, human, walk, args.steps, args.fit_cache, args.matching)
    assign(man, walk)
    # Columns spread over one cycle (the last key repeats the first).
    cycle = frames[:-1] if len(frames) > 2 else frames
    shown = [cycle[round(i * len(cycle) / args.columns)] for i in range(args.columns)]
    rows = []
    for body in bodies:
        row = []
        for frame in shown:
            bpy.context.scene.frame_set(frame)
            row.append(tile(body, f"{body.name}{frame}"))
        rows.append(np.concatenate(row, axis=1))
    strip = np.concatenate(rows, axis=0)
    how = "surface features" if args.matching == "features" else "nearest rest points (baseline)"
    labels = [(6, 4, "source: man, walk"), (6, args.tile + 4, f"target: other skeleton, matched by {how}")]
    labels += [(c * args.tile + args.tile - 60, 4, f"frame {f}") for c, f in enumerate(shown)]
    strip_name = "motion_transfer.png" if args.matching == "features" else "motion_transfer_nearest_rest.png"
    save_png(strip, args.out / strip_name, labels)
    for name in ("motion_transfer_before.png", strip_name):
        print(f"{args.out / name}: {(args.out / name).stat().st_size / 1024:.0f} KiB")
    print(f"action '{action.name}', frames {frames[0]}-{frames[-1]}, shown {shown}; "
          + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items())
          + f"; total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
