"""Triangle meshes in: load from files or take arrays, validate, clean and normalise.

Every result sa3df returns is per *input* vertex, in the caller's order. Cleaning never reorders
vertices: it drops faces (degenerate, duplicate, touching non-finite vertices), marks non-finite
vertices as dropped, and welds vertices at identical positions (files split them at UV or normal
seams, which would cut the surface apart for geodesics and spectra). :meth:`Mesh.to_input` maps
per-vertex results back, giving welded copies the same value.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

MESH_SUFFIXES = (".obj", ".ply", ".off", ".stl", ".glb", ".gltf")
MAX_COORDINATE = 1e15  # squared lengths and areas of larger coordinates lose all precision or overflow


@dataclass
class CleanReport:
    """What cleaning changed, for the user to read."""

    polygons_triangulated: int = 0
    degenerate_faces: int = 0
    duplicate_faces: int = 0
    nonfinite_vertices: int = 0
    faces_on_nonfinite: int = 0
    welded_vertices: int = 0

    def summary(self) -> str:
        parts = [f"{v} {k.replace('_', ' ')}" for k, v in self.__dict__.items() if v]
        return ", ".join(parts) if parts else "clean"


@dataclass
class Mesh:
    """A cleaned triangle mesh.

    ``vertices`` (N, 3) float64 are the finite, welded input vertices, in order of first appearance;
    ``faces`` (F, 3) int64 index into them. ``input_index`` (N,) gives each vertex's (first) index in the
    caller's array, which had ``input_vertex_count`` rows; ``input_to_clean`` (N_input,) maps every input
    vertex to its vertex here (-1: dropped). ``parts`` (N,) labels the file part each vertex came from.
    ``piece_links`` (L, 2) vertex id pairs whose two connected pieces belong together (a rig's joints:
    :func:`sa3df.apps.landmarks.rig_piece_links`); None: every piece is bridged to its nearest others.
    """

    vertices: np.ndarray
    faces: np.ndarray
    input_index: np.ndarray
    input_vertex_count: int
    name: str = "mesh"
    parts: np.ndarray | None = None
    report: CleanReport = field(default_factory=CleanReport)
    input_to_clean: np.ndarray | None = None
    piece_links: np.ndarray | None = None

    def __post_init__(self):
        if self.input_to_clean is None:  # no welding: a one-to-one map with holes for dropped vertices
            self.input_to_clean = np.full(self.input_vertex_count, -1, dtype=np.int64)
            self.input_to_clean[self.input_index] = np.arange(len(self.input_index))

    @property
    def n_vertices(self) -> int:
        return len(self.vertices)

    def to_input(self, values: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """Map a per-vertex array (N, ...) back onto the input vertices (N_input, ...)."""
        values = np.asarray(values)
        if len(values) != self.n_vertices:
            raise ValueError(f"Mesh '{self.name}': got {len(values)} values for {self.n_vertices} vertices")
        if self.n_vertices == self.input_vertex_count:
            return values
        out_dtype = np.result_type(values.dtype, np.float32) if np.isnan(fill) else values.dtype
        out = values[np.maximum(self.input_to_clean, 0)].astype(out_dtype, copy=False)
        out[self.input_to_clean < 0] = fill
        return out

    def normalized(self) -> "Mesh":
        """Copy with the bounding-box centre at the origin and max |coordinate| = 1 (the method's frame)."""
        return dataclasses.replace(self, vertices=normalize_vertices(self.vertices))

    def content_hash(self) -> str:
        """Stable hash of geometry and connectivity; keys every on-disk cache."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.vertices, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(self.faces, dtype=np.int64).tobytes())
        return h.hexdigest()[:24]

    def components(self) -> np.ndarray:
        """(N,) connected-component label per vertex (an unreferenced vertex is its own component)."""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        n = self.n_vertices
        i = self.faces[:, [0, 1, 2]].ravel()
        j = self.faces[:, [1, 2, 0]].ravel()
        graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
        return connected_components(graph, directed=False)[1]

    def surface_area(self) -> float:
        a, b, c = (self.vertices[self.faces[:, k]] for k in range(3))
        return float(0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum())

    def vertex_normals(self) -> np.ndarray:
        """(N, 3) unit area-weighted vertex normals (zero for unreferenced vertices)."""
        a, b, c = (self.vertices[self.faces[:, k]] for k in range(3))
        face_normals = np.cross(b - a, c - a)  # length = 2 * area, so the sum is area-weighted
        normals = np.zeros_like(self.vertices)
        for k in range(3):
            np.add.at(normals, self.faces[:, k], face_normals)
        length = np.linalg.norm(normals, axis=1, keepdims=True)
        return np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)


def normalize_vertices(vertices: np.ndarray) -> np.ndarray:
    """Centre the bounding box at the origin and scale so max |coordinate| = 1."""
    v = np.asarray(vertices, dtype=np.float64)
    centred = v - (v.min(axis=0) + v.max(axis=0)) / 2
    scale = np.abs(centred).max()
    return centred / scale if scale > 0 else centred


def triangulate(faces: np.ndarray | Sequence[Sequence[int]]) -> tuple[np.ndarray, int]:
    """Fan-triangulate polygons. Accepts an (F, k) array or a ragged list. Returns (T, 3), #polygons split."""
    if isinstance(faces, np.ndarray) and faces.ndim == 2:
        k = faces.shape[1]
        if k < 3:
            raise ValueError(f"faces have {k} corners each; a face needs at least 3")
        if k == 3:
            return faces.astype(np.int64), 0
        tris = [faces[:, [0, i, i + 1]] for i in range(1, k - 1)]
        return np.stack(tris, axis=1).reshape(-1, 3).astype(np.int64), len(faces)
    tris, split = [], 0
    for poly in faces:
        poly = list(poly)
        if len(poly) < 3:
            raise ValueError(f"a face has {len(poly)} corners; a face needs at least 3")
        split += len(poly) > 3
        tris.extend((poly[0], poly[i], poly[i + 1]) for i in range(1, len(poly) - 1))
    return np.asarray(tris, dtype=np.int64).reshape(-1, 3), split


def from_arrays(vertices, faces, name: str = "mesh", parts: np.ndarray | None = None, weld: bool = True) -> Mesh:
    """Validate and clean caller arrays into a :class:`Mesh` (vertex order kept).

    ``weld`` merges vertices at bit-identical positions into one (their results are shared).

    Raises ``ValueError`` naming the problem for empty, 2-D, out-of-range or face-less input,
    or when no finite face is left.
    """
    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"Mesh '{name}': vertices must be an (N, 3) array, got shape {v.shape}")
    if len(v) == 0:
        raise ValueError(f"Mesh '{name}' is empty (no vertices)")
    if faces is None or len(faces) == 0:
        raise ValueError(f"Mesh '{name}' has no faces ({len(v)} loose vertices)")
    tris, split = triangulate(faces if not isinstance(faces, np.ndarray) else np.asarray(faces))
    if tris.min() < 0 or tris.max() >= len(v):
        raise ValueError(
            f"Mesh '{name}': face indices must lie in [0, {len(v) - 1}], found {tris.min()}..{tris.max()}"
        )
    report = CleanReport(polygons_triangulated=split)

    finite = np.isfinite(v).all(axis=1)
    if finite.any() and (largest := np.abs(v[finite]).max()) > MAX_COORDINATE:
        raise ValueError(f"Mesh '{name}': coordinates reach {largest:.3g}, beyond what sa3df computes with "
                         f"(|x| <= {MAX_COORDINATE:.0e}); scale the mesh down")
    report.nonfinite_vertices = int((~finite).sum())
    on_bad = ~finite[tris].all(axis=1)
    report.faces_on_nonfinite = int(on_bad.sum())
    tris = tris[~on_bad]
    input_to_clean, keep = _weld_map(v, finite, weld)
    report.welded_vertices = int(finite.sum() - len(keep))
    tris = input_to_clean[tris]

    degenerate = (tris[:, 0] == tris[:, 1]) | (tris[:, 1] == tris[:, 2]) | (tris[:, 0] == tris[:, 2])
    if len(tris):  # ``tris`` now index the welded vertices ``v[keep]``, not the input rows
        a, b, c = (v[keep][tris[:, k]] for k in range(3))
        area2 = np.linalg.norm(np.cross(b - a, c - a), axis=1)
        degenerate |= area2 <= 1e-12 * max(np.ptp(v[finite], axis=0).max(), 1e-30) ** 2
    report.degenerate_faces = int(degenerate.sum())
    tris = tris[~degenerate]

    _, first = np.unique(np.sort(tris, axis=1), axis=0, return_index=True)
    report.duplicate_faces = len(tris) - len(first)
    tris = tris[np.sort(first)]
    if len(tris) == 0:
        raise ValueError(f"Mesh '{name}' has no usable faces after cleaning ({report.summary()})")

    return Mesh(
        vertices=v[keep], faces=tris, input_index=keep, input_vertex_count=len(v), name=name,
        parts=None if parts is None else np.asarray(parts)[keep], report=report, input_to_clean=input_to_clean,
    )


def _weld_map(v: np.ndarray, finite: np.ndarray, weld: bool) -> tuple[np.ndarray, np.ndarray]:
    """(input_to_clean (N_input,), kept input ids (N,)): finite vertices, coincident ones merged into
    their first occurrence; clean ids follow the order of first appearance."""
    candidates = np.flatnonzero(finite)
    input_to_clean = np.full(len(v), -1, dtype=np.int64)
    if not weld:
        input_to_clean[candidates] = np.arange(len(candidates))
        return input_to_clean, candidates
    _, first, inverse = np.unique(v[candidates], axis=0, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    input_to_clean[candidates] = rank[inverse.ravel()]
    return input_to_clean, candidates[np.sort(first)]


def load(path: str | Path, name: str | None = None) -> Mesh:
    """Load a mesh file through trimesh without reordering vertices.

    A multi-part file (a glTF scene, an OBJ with several objects) becomes one mesh with every node's
    world transform applied; ``Mesh.parts`` records which part each vertex came from.
    """
    import trimesh

    path = Path(path)
    if not path.exists():
        raise ValueError(f"Mesh file '{path}' does not exist")
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise ValueError(f"'{path.name}': unsupported mesh format (use one of {', '.join(MESH_SUFFIXES)})")
    name = name or path.stem
    if path.suffix.lower() == ".obj":
        return _load_obj(path, name)
    loaded = trimesh.load(str(path), process=False, maintain_order=True)
    if isinstance(loaded, trimesh.Trimesh):
        return from_arrays(loaded.vertices, loaded.faces, name=name)
    if not isinstance(loaded, trimesh.Scene):
        raise ValueError(f"'{path.name}' holds no triangle mesh (found {type(loaded).__name__})")
    verts, faces, parts, offset = [], [], [], 0
    for part, node in enumerate(loaded.graph.nodes_geometry):
        transform, geometry_name = loaded.graph[node]
        geometry = loaded.geometry[geometry_name]
        if not isinstance(geometry, trimesh.Trimesh) or len(geometry.faces) == 0:
            continue
        verts.append(trimesh.transform_points(geometry.vertices, transform))
        faces.append(np.asarray(geometry.faces) + offset)
        parts.append(np.full(len(geometry.vertices), part))
        offset += len(geometry.vertices)
    if not verts:
        raise ValueError(f"'{path.name}' holds no triangle mesh")
    return from_arrays(np.concatenate(verts), np.concatenate(faces), name=name, parts=np.concatenate(parts))


def _load_obj(path: Path, name: str) -> Mesh:
    """Read an OBJ's ``v`` and ``f`` records exactly (trimesh splits vertices at UV seams).

    Polygons are triangulated; ``o``/``g`` records become parts; negative (relative) indices work.
    """
    vertices, polygons, parts_of_faces, part = [], [], [], 0
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if line.startswith("v "):
                vertices.append(_obj_numbers(line.split()[1:4], float, path, number, "vertex"))
            elif line.startswith("f "):
                n = len(vertices)
                poly = _obj_numbers([t.split("/")[0] for t in line.split()[1:]], int, path, number, "face")
                polygons.append([i - 1 if i > 0 else n + i for i in poly])
                parts_of_faces.append(part)
            elif line.startswith(("o ", "g ")) and polygons:
                part += 1
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    vertex_parts = np.zeros(len(v), dtype=np.int64)
    for poly, p in zip(polygons, parts_of_faces):
        vertex_parts[[i for i in poly if 0 <= i < len(v)]] = p
    return from_arrays(v, polygons, name=name, parts=vertex_parts)


def _obj_numbers(tokens: list[str], kind, path: Path, line: int, record: str) -> list:
    """The numbers of one OBJ record; ``ValueError`` naming the file, line and token otherwise."""
    if record == "vertex" and len(tokens) < 3:
        raise ValueError(f"'{path.name}' line {line}: a vertex needs three coordinates, got {len(tokens)}")
    try:
        return [kind(token) for token in tokens]
    except ValueError:
        bad = next(t for t in tokens if not _parses(t, kind))
        raise ValueError(f"'{path.name}' line {line}: {record} record has '{bad}', not a number") from None


def _parses(token: str, kind) -> bool:
    try:
        kind(token)
    except ValueError:
        return False
    return True
