"""File formats of the command line: feature archives, coloured PLYs, ground-truth pair lists."""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from sa3df.core.mesh import MESH_SUFFIXES, Mesh, load  # noqa: F401  (MESH_SUFFIXES is re-exported for the CLI)


@dataclass
class MeshFeatures:
    """A cleaned mesh with its per-vertex base features (N, D) and surface-aware embedding (N, E)."""

    mesh: Mesh
    base: np.ndarray
    embedding: np.ndarray
    extractor: str


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
    atomically: a crash never leaves a truncated archive. ``provenance`` (JSON-able) is stored as
    ``provenance`` (a JSON string) for tools such as ``sa3df batch`` that check what made a file."""
    m = item.mesh
    arrays = dict(
        vertices=m.vertices, faces=m.faces, input_index=m.input_index, input_to_clean=m.input_to_clean,
        input_vertex_count=m.input_vertex_count, name=m.name, base=item.base.astype(np.float16),
        embedding=item.embedding.astype(np.float32), extractor=item.extractor,
    )
    if provenance is not None:
        arrays["provenance"] = json.dumps(provenance, sort_keys=True)
    write_atomically(Path(path), lambda handle: np.savez_compressed(handle, **arrays))
    return Path(path)


def write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it onto ``path``."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(partial, "wb") as handle:
            write(handle)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def load_features(path: Path) -> MeshFeatures:
    """Read an archive written by :func:`save_features` (``sa3df features``)."""
    try:
        with np.load(path, allow_pickle=False) as d:
            mesh = Mesh(d["vertices"], d["faces"], d["input_index"], int(d["input_vertex_count"]), str(d["name"]),
                        input_to_clean=d["input_to_clean"])
            return MeshFeatures(mesh, d["base"].astype(np.float32), d["embedding"], str(d["extractor"]))
    except (KeyError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(f"'{path}' is not an sa3df feature archive ({error})") from None


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
