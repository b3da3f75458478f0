"""What cleaning keeps of real glTF characters, and the frame-to-frame quality it gives.

glTF files split vertices at UV seams; cleaning welds them back. For each quadruped this prints the
faces in the file, the faces cleaning keeps, the boundary edges left (holes) and the surface area;
then, for two frames of its walk posed by Blender (the bpy module), ``sa3df eval`` of frame B
against frame A (ground truth: vertex identity). Run with the backend to compare on PYTHONPATH:

    PYTHONPATH=backend .venv/bin/python bench/bench_seam_cleaning.py [--steps 300]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SA3DF_DATA", REPO.parent / "shared" / "data"))
CHARACTERS = ("khronos_fox.glb", "quaternius_fox.glb", "quaternius_wolf.glb")


def cleaning_row(name: str) -> str:
    import trimesh

    from sa3df.core import mesh

    path = DATA / "quadrupeds" / name
    file_faces = sum(len(g.faces) for g in trimesh.load(path, process=False).geometry.values())
    m = mesh.load(path)
    edges = np.sort(m.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    boundary = int((np.unique(edges, axis=0, return_counts=True)[1] == 1).sum())
    return f"{name:<22}{file_faces:>7}{len(m.faces):>7}{boundary:>10}{m.surface_area():>14.4g}"


def export_walk_frames(name: str, folder: Path) -> None:
    """Two frames (a quarter of the walk apart) of the character's largest mesh as OBJ, seams kept."""
    sys.path[:0] = [str(REPO), str(REPO / "tests")]
    from blender_scene import import_character, posed_vertices, set_action

    armature, meshes = import_character(DATA / "quadrupeds" / name)
    body = max(meshes, key=lambda o: len(o.data.vertices))
    action = set_action(armature, "Walk")
    start, end = (int(f) for f in action.frame_range)
    body.data.calc_loop_triangles()
    faces = np.array([t.vertices[:] for t in body.data.loop_triangles]) + 1
    for label, frame in (("a", start), ("b", start + (end - start) // 4)):
        vertices = posed_vertices(body, frame)
        lines = [f"v {x:.7g} {y:.7g} {z:.7g}" for x, y, z in vertices] + [f"f {a} {b} {c}" for a, b, c in faces]
        (folder / f"{label}.obj").write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--characters", nargs="+", default=list(CHARACTERS), choices=CHARACTERS,
                        help="which to evaluate frame to frame (default: all)")
    args = parser.parse_args()
    if not DATA.exists():
        print(f"no shared data at {DATA}", file=sys.stderr)
        return 1
    import sa3df

    print(f"backend: {Path(sa3df.__file__).parent}")
    print(f"{'character':<22}{'faces':>7}{'kept':>7}{'boundary':>10}{'area':>14}")
    for name in CHARACTERS:
        print(cleaning_row(name))
    from sa3df.cli import main as cli

    for name in args.characters:
        with tempfile.TemporaryDirectory() as folder:
            export_walk_frames(name, Path(folder))
            print(f"\n{name}: walk frame B against frame A, geometric features, {args.steps} steps", flush=True)
            cli(["eval", "--folder", folder, "--symmetric", "--steps", str(args.steps), "--up", "z",
                 "--cache", str(Path(folder) / "cache")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
