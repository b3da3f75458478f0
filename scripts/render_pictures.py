"""Render the README's before/after pictures of each button, headless (Workbench, bpy module).

    python scripts/render_pictures.py [--data ../shared/data] [--out docs/images] [--size 256] [--effort fast]

Builds and installs the extension zip exactly as a user would, imports the Quaternius man and
woman (CC0), presses each button and renders the scene before and after it:

- ``features_before.png`` / ``features_after.png``: Compute Features on the man (PCA colours);
- ``correspondence.png``: two walk-cycle frames side by side, frame A's position colours carried
  to frame B by the matching;
- ``correspondence_cross.png``: the man at rest (left, position colours) and a different character
  with another skeleton, mid-walk (right, the man's colours carried over by the default matching);
- ``parts.png``: Segment Parts on the man (active) and the woman, side by side: the man's parts carried to
  the woman by the matching (same colour = same part);
- ``skin_weights_before.png`` / ``skin_weights_after.png``: the woman's mesh without weights, then
  posed by the man's armature through the transferred weights.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from blender_scene import sandbox_blender_user  # noqa: E402

sandbox_blender_user("sa3df-pictures-")
import bpy  # noqa: E402
import numpy as np  # noqa: E402

import blender_scene  # noqa: E402
from blender_scene import clear_scene, select  # noqa: E402
from sa3df.service import client as worker_client  # noqa: E402
from sa3df_addon.mesh_io import mesh_arrays  # noqa: E402


def import_character(path: Path):
    """Import a character in its rest pose, only its body rendered; returns (armature, body mesh)."""
    before = set(bpy.data.objects)
    rig, body = blender_scene.add_character(path)
    rig.data.pose_position = "REST"
    for obj in set(bpy.data.objects) - before:  # no eyes/helpers in the pictures
        obj.hide_render = obj is not body and obj.type == "MESH"
    bpy.context.view_layer.update()
    return rig, body


def world_points(obj) -> np.ndarray:
    """(N, 3) world-space vertices of ``obj`` as the depsgraph shows it."""
    return mesh_arrays(obj, evaluated=True, world=True)[0]


def frame_camera(objects, size: int, scale: float | None = None) -> None:
    """An orthographic camera looking at the objects' front (-Y side) and filling the frame
    (or showing ``scale`` world units across)."""
    points = np.concatenate([world_points(obj) for obj in objects])
    low, high = points.min(axis=0), points.max(axis=0)
    centre, extent = (low + high) / 2, high - low
    camera = bpy.data.objects.get("PictureCamera") or bpy.data.objects.new("PictureCamera", bpy.data.cameras.new("PictureCamera"))
    if camera.name not in bpy.context.scene.collection.objects:
        bpy.context.scene.collection.objects.link(camera)
    camera.data.type = "ORTHO"
    camera.data.ortho_scale = float(scale or max(extent[0], extent[2]) * 1.1)
    camera.location = (centre[0], low[1] - 10 * max(extent), centre[2])
    camera.rotation_euler = (math.pi / 2, 0.0, 0.0)
    camera.data.clip_end = 100 * max(extent)
    scene = bpy.context.scene
    scene.camera = camera
    scene.render.resolution_x = scene.render.resolution_y = size


def render_side_by_side(objects, path: Path, color_type: str, size: int) -> float:
    """Render each object alone at one common scale and put the pictures side by side."""
    scale = max(float(np.ptp(world_points(o)[:, [0, 2]], axis=0).max()) for o in objects) * 1.1
    hidden = {o: o.hide_render for o in objects}
    tiles, seconds = [], 0.0
    for i, obj in enumerate(objects):
        for other in objects:
            other.hide_render = other is not obj
        frame_camera([obj], size, scale)
        tile = path.with_name(f"{path.stem}.part{i}.png")
        seconds += render(tile, color_type)
        image = bpy.data.images.load(str(tile))
        tiles.append(np.array(image.pixels[:], dtype=np.float32).reshape(size, size, 4))
        bpy.data.images.remove(image)
        tile.unlink()
    for obj, flag in hidden.items():
        obj.hide_render = flag
    row = np.concatenate(tiles, axis=1)
    picture = bpy.data.images.new(path.stem, row.shape[1], row.shape[0])
    picture.pixels[:] = row.ravel()
    picture.filepath_raw, picture.file_format = str(path), "PNG"
    picture.save()
    bpy.data.images.remove(picture)
    return seconds


def render(path: Path, color_type: str) -> float:
    """Workbench render to ``path``; ``color_type`` "VERTEX" shows the active colour attribute."""
    scene = bpy.context.scene
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.display.shading.light = "STUDIO"
    scene.display.shading.color_type = color_type
    scene.display.shading.single_color = (0.8, 0.8, 0.8)
    scene.render.film_transparent = False
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.image_settings.compression = 90
    scene.render.filepath = str(path)
    started = time.perf_counter()
    bpy.ops.render.render(write_still=True)
    return time.perf_counter() - started


def pictures(data: Path, out: Path, size: int) -> list[tuple[str, float]]:
    humans = data / "humanoids"
    made = []
    out.mkdir(parents=True, exist_ok=True)

    clear_scene()
    rig, man = import_character(humans / "quaternius_male_casual.fbx")
    frame_camera([man], size)
    made.append(("features_before.png", render(out / "features_before.png", "SINGLE")))
    select([man], man)
    bpy.ops.sa3df.compute_features()
    made.append(("features_after.png", render(out / "features_after.png", "VERTEX")))

    made.append(("correspondence.png", correspondence_picture(rig, man, out, size)))
    made.append(("correspondence_cross.png", cross_correspondence_picture(humans, out, size)))

    clear_scene()
    _, man = import_character(humans / "quaternius_male_casual.fbx")
    _, woman = import_character(humans / "quaternius_female_casual.fbx")
    bpy.context.scene.sa3df.part_source, bpy.context.scene.sa3df.part_count = "KMEANS", 8
    select([man, woman], man)
    bpy.ops.sa3df.segment_parts()
    made.append(("parts.png", render_side_by_side([man, woman], out / "parts.png", "VERTEX", size)))

    made += skin_weight_pictures(humans, out, size)
    return made


def correspondence_picture(rig, man, out: Path, size: int) -> float:
    """Frame A (left, position colours) and frame B (right, A's colours carried by the matching)."""
    action = next(a for a in bpy.data.actions if "Walk" in a.name)
    rig.data.pose_position = "POSE"
    rig.animation_data.action = action
    if hasattr(rig.animation_data, "action_slot") and action.slots:
        rig.animation_data.action_slot = action.slots[0]
    start, end = (int(f) for f in action.frame_range)
    copies = []
    for i, frame in enumerate((start, start + (end - start) // 2)):
        bpy.context.scene.frame_set(frame)
        data = bpy.data.meshes.new_from_object(man.evaluated_get(bpy.context.evaluated_depsgraph_get()))
        copy = bpy.data.objects.new(f"Frame{'AB'[i]}", data)
        copy.matrix_world = man.matrix_world.copy()
        bpy.context.scene.collection.objects.link(copy)
        copies.append(copy)
    man.hide_render = True
    select(copies, copies[0])
    bpy.ops.sa3df.show_correspondence()
    return render_side_by_side(copies, out / "correspondence.png", "VERTEX", size)


def posed_copy(rig, obj, action_name: str, name: str):
    """A new object holding ``obj`` deformed halfway through the action whose name has ``action_name``."""
    action = next(a for a in bpy.data.actions if action_name in a.name and a.users)
    rig.data.pose_position = "POSE"
    rig.animation_data.action = action
    if hasattr(rig.animation_data, "action_slot") and action.slots:
        rig.animation_data.action_slot = action.slots[0]
    start, end = (int(f) for f in action.frame_range)
    bpy.context.scene.frame_set(start + (end - start) // 2)
    data = bpy.data.meshes.new_from_object(obj.evaluated_get(bpy.context.evaluated_depsgraph_get()))
    copy = bpy.data.objects.new(name, data)
    copy.matrix_world = obj.matrix_world.copy()
    bpy.context.scene.collection.objects.link(copy)
    obj.hide_render = True
    return copy


def cross_correspondence_picture(humans: Path, out: Path, size: int) -> float:
    """The man at rest (left) and the animated human (another skeleton) walking (right)."""
    clear_scene()
    _, man = import_character(humans / "quaternius_male_casual.fbx")
    rig, human = import_character(humans / "quaternius_animated_human.fbx")
    walking = posed_copy(rig, human, "Walk", "Walking")
    select([man, walking], man)
    bpy.ops.sa3df.show_correspondence()
    return render_side_by_side([man, walking], out / "correspondence_cross.png", "VERTEX", size)


def skin_weight_pictures(humans: Path, out: Path, size: int) -> list[tuple[str, float]]:
    clear_scene()
    rig, man = import_character(humans / "quaternius_male_casual.fbx")
    _, woman = import_character(humans / "quaternius_female_casual.fbx")
    woman.hide_render = True
    target = bpy.data.objects.new("Target", woman.data.copy())
    target.matrix_world = woman.matrix_world.copy()
    bpy.context.scene.collection.objects.link(target)
    for group in list(target.vertex_groups):
        target.vertex_groups.remove(group)
    man.hide_render = True
    select([man, target], man)
    bpy.ops.sa3df.transfer_skin_weights()
    action = next(a for a in bpy.data.actions if "Punch" in a.name and a.users)
    rig.animation_data.action = action
    if hasattr(rig.animation_data, "action_slot") and action.slots:
        rig.animation_data.action_slot = action.slots[0]
    start, end = (int(f) for f in action.frame_range)
    bpy.context.scene.frame_set(start + (end - start) // 2)
    frame_camera([target], size)
    before = render(out / "skin_weights_before.png", "SINGLE")
    rig.data.pose_position = "POSE"
    bpy.context.view_layer.update()
    return [("skin_weights_before.png", before), ("skin_weights_after.png", render(out / "skin_weights_after.png", "SINGLE"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("SA3DF_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--effort", default="fast", choices=["off", "fast", "normal", "thorough"])
    args = parser.parse_args()
    blender_scene.install_extension(blender_scene.scratch_dir("sa3df-cache-"), extractor="geometric",
                                    effort=args.effort, device="auto")
    for name, seconds in pictures(args.data, args.out, args.size):
        print(f"{name}: rendered in {seconds:.2f} s ({(args.out / name).stat().st_size / 1024:.0f} KiB)")
    worker_client.release_shared_client()


if __name__ == "__main__":
    main()
