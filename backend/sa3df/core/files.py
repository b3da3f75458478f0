"""File formats of the command line: feature archives, coloured PLYs, ground-truth pair lists."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sa3df.core.mesh import MESH_SUFFIXES, Mesh, load  # noqa: F401  (MESH_SUFFIXES is re-exported for the CLI)
from sa3df.core.storage import UNREADABLE, finite_array, write_npz


@dataclass
class MeshFeatures:
    """A cleaned mesh with its per-vertex base features (N, D) and surface-aware embedding (N, E), float32."""

    mesh: Mesh
    base: np.ndarray
    embedding: np.ndarray
    extractor: str

    def __post_init__(self):  # archives hold float16; callers always get float32
        self.base = np.asarray(self.base, dtype=np.float32)
        self.embedding = np.asarray(self.embedding, dtype=np.float32)


def default_cache_dir() -> Path:
    """$SA3DF_CACHE, else the platform's user cache folder + /sa3df."""
    if os.environ.get("SA3DF_CACHE"):
        return Path(os.environ["SA3DF_CACHE"])
    root = os.environ.get("XDG_CACHE_HOME") or (
        os.environ.get("LOCALAPPDATA") if os.name == "nt" else str(Path.home() / ".cache")
    )
    return Path(root or Path.home()) / "sa3df"


def load_mesh(path: Path) -> Mesh:
    if not Path(path).exists():
        raise FileNotFoundError(f"'{path}' does not exist")
    return load(path)


def save_features(path: Path, item: MeshFeatures, provenance: dict | None = None) -> Path:
    """Write an .npz holding the cleaned mesh (with its map to input vertices) and both feature sets,
    atomically. ``provenance`` (JSON-able) is stored as a JSON string, for tools such as ``sa3df batch``
    that check what made a file.

    Features are stored as float16: unit embedding rows keep about 3 significant digits, which moves a
    cosine similarity by ~1e-3 (nearest-neighbour matches agree; tests/test_feature_archive.py), at half the size."""
    m = item.mesh
    arrays = dict(
        vertices=m.vertices, faces=m.faces, input_index=m.input_index, input_to_clean=m.input_to_clean,
        input_vertex_count=m.input_vertex_count, name=m.name, base=item.base.astype(np.float16),
        embedding=item.embedding.astype(np.float16), extractor=item.extractor,
    )
    if provenance is not None:
        arrays["provenance"] = json.dumps(provenance, sort_keys=True)
    return write_npz(path, arrays, compressed=True)



def load_features(path: Path) -> MeshFeatures:
    """Read an archive written by :func:`save_features` (``sa3df features``)."""
    try:
        with np.load(path, allow_pickle=False) as d:
            mesh = Mesh(d["vertices"], d["faces"], d["input_index"], int(d["input_vertex_count"]), str(d["name"]),
                        input_to_clean=d["input_to_clean"])
            item = MeshFeatures(mesh, d["base"].astype(np.float32), d["embedding"], str(d["extractor"]))
    except UNREADABLE as error:
        raise ValueError(f"'{path}' is not an sa3df feature archive, or it is damaged ({error})") from None
    for what, values in (("base", item.base), ("embedding", item.embedding)):
        if not finite_array(values.astype(np.float32), (mesh.n_vertices, None)):
            raise ValueError(f"'{path}' is damaged: its {what} features are not one finite row per vertex "
                             f"({values.shape} for {mesh.n_vertices} vertices); compute them again")
    return item


def write_colored_ply(path: Path, mesh: Mesh, rgb: np.ndarray) -> Path:
    """Write ``mesh`` with per-vertex colours ``rgb`` (N, 3) in [0, 1] as a binary PLY."""
    import trimesh

    colors = np.clip(np.asarray(rgb) * 255 + 0.5, 0, 255).astype(np.uint8)
    trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_colors=colors, process=False).export(path)
    return Path(path)


def load_pairs(path: Path) -> np.ndarray:
    """(M, 2) int64 ground-truth pairs ``source_vertex target_vertex`` from a text file ('#' comments)."""
    try:
        pairs = np.loadtxt(path, dtype=np.int64, comments="#", ndmin=2)
    except (OSError, ValueError) as error:
        raise ValueError(f"'{path}': expected two integer columns 'source_vertex target_vertex' ({error})") from None
    if pairs.shape[1] != 2 or len(pairs) == 0:
        raise ValueError(f"'{path}': expected two integer columns 'source_vertex target_vertex', got {pairs.shape}")
    return pairs
