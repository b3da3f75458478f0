"""What the add-on's plumbing costs: the worker round trip, and writing results into Blender.

    python bench/bench_addon.py

1. Worker: an (almost) empty job through the running worker vs in-process, and what the worker adds
   for a 100k-vertex mesh: writing and reading its arrays and a per-vertex result as .npz files,
   against reading the mesh in-process (what every job does anyway).
2. Scene writes on a 100k-vertex mesh: colour attribute with ``foreach_set`` vs a per-vertex loop,
   and skin-weight vertex groups (4 influences per vertex) with grouped ``VertexGroup.add`` calls
   vs one call per vertex.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "backend"), str(REPO / "tests")]

from blender_scene import sandbox_blender_user  # noqa: E402

sandbox_blender_user("sa3df-bench-")


def grid(n_side: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.meshgrid(np.arange(n_side, dtype=float), np.arange(n_side, dtype=float))
    vertices = np.stack([x.ravel(), y.ravel(), np.sin(x.ravel() / 7) * np.cos(y.ravel() / 5)], axis=1)
    i = np.arange(n_side - 1)
    a = (i[:, None] * n_side + i[None, :]).ravel()
    faces = np.concatenate([np.stack([a, a + 1, a + n_side + 1], 1), np.stack([a, a + n_side + 1, a + n_side], 1)])
    return vertices, faces


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def bench_worker(vertices, faces) -> None:
    from sa3df.service import client as worker_client
    from sa3df.service import jobs
    from sa3df.service.context import JobOutput
    from sa3df.service.feature_service import meshes_from_inputs
    from sa3df.service.protocol import load_arrays, meshes_to_inputs, save_arrays

    arrays = meshes_to_inputs([(vertices, faces)])
    params = {"mesh_names": ["grid"], "mode": "none"}

    def roundtrip(ctx):  # reads the mesh like every job, returns a per-vertex array
        mesh = meshes_from_inputs(ctx.inputs, ctx.params)[0]
        return JobOutput({"labels": mesh.to_input(np.zeros(mesh.n_vertices, np.int32), fill=-1)})

    jobs.register("bench_mesh_roundtrip", roundtrip)

    client = worker_client.WorkerClient()
    client.wait(client.submit("environment", {}, {}))  # start-up (torch import) is not counted
    in_process = best_of(lambda: jobs.run_job("environment", {}, {}))
    through_worker = best_of(lambda: client.wait(client.submit("environment", {}, {})))
    direct = best_of(lambda: jobs.run_job("bench_mesh_roundtrip", arrays, params))
    with tempfile.TemporaryDirectory() as tmp:
        def files():
            save_arrays(Path(tmp) / "in.npz", arrays)
            load_arrays(Path(tmp) / "in.npz")
            save_arrays(Path(tmp) / "out.npz", {"labels": np.zeros(len(vertices), np.int32)})
            load_arrays(Path(tmp) / "out.npz")

        transfer = best_of(files)
    client.release()
    print(f"worker: empty job round trip {through_worker * 1000:.1f} ms (in-process {in_process * 1000:.1f} ms)")
    print(f"worker: {len(vertices):,}-vertex mesh through .npz files {transfer * 1000:.1f} ms "
          f"vs reading it in-process {direct * 1000:.1f} ms (x{transfer / max(direct, 1e-9):.2f})")


def bench_scene_writes(vertices, faces) -> None:
    import bpy

    from sa3df_addon import results

    mesh = bpy.data.meshes.new("bench")
    mesh.from_pydata(vertices.tolist(), [], faces.tolist())
    obj = bpy.data.objects.new("bench", mesh)
    bpy.context.scene.collection.objects.link(obj)
    n = len(vertices)
    rgb = np.random.default_rng(0).random((n, 3)).astype(np.float32)

    bulk = best_of(lambda: results.write_color_attribute(obj, "sa3df_bench", rgb), 3)

    def per_vertex():
        attribute = mesh.color_attributes.get("loop") or mesh.color_attributes.new("loop", "FLOAT_COLOR", "POINT")
        for i, value in enumerate(attribute.data):
            value.color = (*rgb[i], 1.0)

    loop = best_of(per_vertex, 1)
    print(f"colour attribute, {n:,} vertices: foreach_set {bulk * 1000:.1f} ms, per-vertex loop {loop * 1000:.1f} ms "
          f"(x{loop / bulk:.0f})")

    rng = np.random.default_rng(1)
    k = 24
    weights = np.zeros((n, k), np.float32)
    for column in range(4):  # 4 influences, quantised like real skin weights (many exact 1.0 / 0.5 values)
        weights[np.arange(n), rng.integers(0, k, n)] += np.round(rng.random(n) * 4) / 4
    weights /= np.maximum(weights.sum(1, keepdims=True), 1e-6)
    names = [f"bone{j:02d}" for j in range(k)]
    grouped = best_of(lambda: results.write_vertex_groups(obj, names, weights, exact_names=True), 1)

    def one_call_per_vertex():
        for j, name in enumerate(names):
            group = obj.vertex_groups.get("p" + name) or obj.vertex_groups.new(name="p" + name)
            for i in np.flatnonzero(weights[:, j] >= 1e-4):
                group.add([int(i)], float(weights[i, j]), "REPLACE")

    naive = best_of(one_call_per_vertex, 1)
    print(f"skin-weight groups, {n:,} vertices x {k} bones: grouped add {grouped * 1000:.0f} ms, "
          f"one call per vertex {naive * 1000:.0f} ms (x{naive / grouped:.1f})")


def main() -> None:
    vertices, faces = grid(317)  # ~100k vertices
    bench_worker(vertices, faces)
    try:
        import bpy  # noqa: F401
    except ImportError:
        print("bpy not installed: scene-write figures skipped")
        return
    bench_scene_writes(vertices, faces)


if __name__ == "__main__":
    main()
