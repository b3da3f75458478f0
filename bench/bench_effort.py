"""Compute Features as a user presses it: the installed extension, two 5k-vertex meshes, each effort level.

Builds and installs the extension zip in headless Blender (bpy module), adds the Poly Haven horse statue
simplified to 5,000 vertices and a copy turned 90° (bench_default_pair's pair), selects both and presses
Compute Features once per effort level, in a fresh cache folder each time (base features and anchors
are computed every time, as on a first press). Prints the wall seconds of each press; the first press
also starts the worker (which imports torch). The panel's effort labels quote these figures.

Run: python bench/bench_effort.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench"), str(ROOT / "backend")]

from blender_scene import sandbox_blender_user, scratch_dir  # noqa: E402

sandbox_blender_user("sa3df-bench-")
import bpy  # noqa: E402

from bench_default_pair import write_pair  # noqa: E402
from blender_scene import clear_scene, install_extension, select  # noqa: E402


def mesh_object(path: Path):
    """A mesh object in the scene made from the PLY at ``path``."""
    import trimesh

    loaded = trimesh.load(path, process=False)
    data = bpy.data.meshes.new(path.stem)
    data.from_pydata(loaded.vertices.tolist(), [], loaded.faces.tolist())
    obj = bpy.data.objects.new(path.stem, data)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def main() -> None:
    work = Path(scratch_dir("sa3df-effort-"))
    preferences = install_extension(work / "cache-warmup", extractor="geometric", effort="off", device="auto")
    clear_scene()
    pair = [mesh_object(path) for path in write_pair(work)]
    bpy.context.view_layer.update()
    print(f"two meshes: {', '.join(f'{o.name} {len(o.data.vertices)} vertices' for o in pair)}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    for effort in ("off", "fast", "normal", "thorough"):
        preferences.effort, preferences.cache_dir = effort, str(work / f"cache-{effort}")
        select(pair, pair[0])
        started = time.perf_counter()
        result = bpy.ops.sa3df.compute_features()
        seconds = time.perf_counter() - started
        note = " (starts the worker)" if effort == "off" else ""
        print(f"  {effort:9s} {seconds:6.1f} s wall {result}{note}", flush=True)


if __name__ == "__main__":
    main()
