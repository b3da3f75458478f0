"""The worker protocol, both ends: message names, the array keys of every job, and the ``.npz`` files.

The front end (:mod:`sa3df.service.client`, used by the Blender add-on) and the worker
(:mod:`sa3df.service.worker`) both import this module. Only numpy and the standard library here: the
add-on imports it inside Blender, whose process never loads torch.

Messages are JSON objects, one per line. Requests (worker's stdin)::

    {"op": "run", "job_id": "7", "name": "segment", "input": "/tmp/x/in.npz",
     "output": "/tmp/x/out.npz", "params": {...}}
    {"op": "cancel", "job_id": "7"}      # stop between two steps; nothing is written
    {"op": "ping"}                        # answered with {"event": "pong"}
    {"op": "quit"}                        # also when stdin closes: the running job stops at its next step

Events (worker's stdout)::

    {"event": "ready", "pid": 123, "jobs": ["compute_features", ...], "version": "0.1.0", "python": "3.11.7"}
    {"event": "progress", "job_id": "7", "fraction": 0.4, "message": "training"}
    {"event": "done", "job_id": "7", "output": "/tmp/x/out.npz", "info": {...}, "seconds": 2.1}
    {"event": "cancelled", "job_id": "7"}
    {"event": "error", "job_id": "7", "kind": "ValueError", "message": "...", "traceback": "..."}

A line that is not a JSON object, or names an unknown op, is answered with an ``error`` event
(``kind`` "ProtocolError", ``job_id`` null) and the worker keeps serving; a ``run`` without ``name``
or ``output`` fails before its job starts.

Arrays travel as ``.npz`` files (no pickle) whose paths the requests name. Meshes go in as
``mesh{i}_vertices`` (N, 3) float and ``mesh{i}_faces`` (F, 3) int, ``params["mesh_names"]`` naming them,
``params["features"]`` the feature settings (:class:`sa3df.features.settings.FeatureSettings`, JSON form).
Every per-vertex result is per *input* vertex, in input order; the keys below say which job writes which.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from sa3df.core.storage import write_npz

# Requests (field "op") and events (field "event").
RUN, CANCEL, PING, QUIT = "run", "cancel", "ping", "quit"
READY, PROGRESS, DONE, CANCELLED, ERROR, PONG = "ready", "progress", "done", "cancelled", "error", "pong"

# Job names.
ENVIRONMENT, COMPUTE_FEATURES, CORRESPONDENCE, SEGMENT = "environment", "compute_features", "correspondence", "segment"
TRANSFER_WEIGHTS, TRANSFER_MOTION, ALIGN_POSE = "transfer_weights", "transfer_motion", "align_pose"

# Inputs besides the meshes.
SOURCE_LABELS = "source_labels"    # segment, mode "transfer": (N_0,) int part per source vertex, -1 unlabelled
SOURCE_WEIGHTS = "source_weights"  # transfer_weights: (N_0, K) vertex-group weights of the source
SOURCE_FRAMES = "source_frames"    # motion jobs: (T, N_0, 3) the source skin per frame, in the target's space
RIG_KEYS = ("rig_parents", "rig_rest_matrices", "rig_rest_vertices", "rig_weights", "rig_faces", "rig_connected")

# Outputs of the motion jobs.
ROTATIONS, LOCATIONS, RESIDUALS = "rotations", "locations", "residuals"


def mesh_vertices(i: int) -> str:
    return f"mesh{i}_vertices"


def mesh_faces(i: int) -> str:
    return f"mesh{i}_faces"


def pca(i: int) -> str:
    """compute_features: (N_i, 3) colours of mesh i from one joint PCA of the embeddings."""
    return f"pca{i}"


def colors(i: int) -> str:
    """correspondence (source's position colours carried over) and segment (part colours): (N_i, 3)."""
    return f"colors{i}"


def source_index(t: int) -> str:
    """correspondence: (N_t,) the matched source vertex of every vertex of mesh t (-1 where dropped)."""
    return f"source_index{t}"


def similarity(t: int) -> str:
    return f"similarity{t}"


def mutual(t: int) -> str:
    return f"mutual{t}"


def labels(i: int) -> str:
    """segment: (N_i,) int32 part per vertex (-1 where a vertex was dropped)."""
    return f"labels{i}"


def weights(t: int) -> str:
    """transfer_weights: (N_t, K) float32 weights of mesh t, rows summing to 1."""
    return f"weights{t}"


def meshes_to_inputs(meshes: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Job arrays for a list of (vertices (N, 3), faces (F, 3)) pairs."""
    arrays = {}
    for i, (vertices, faces) in enumerate(meshes):
        arrays[mesh_vertices(i)] = np.asarray(vertices, dtype=np.float64)
        arrays[mesh_faces(i)] = np.asarray(faces, dtype=np.int64)
    return arrays


def mesh_count(inputs: dict[str, np.ndarray]) -> int:
    return sum(1 for key in inputs if key.startswith("mesh") and key.endswith("_vertices"))


def rig_to_inputs(parents, rest_matrices, rest_vertices, skin_weights, faces, connected) -> dict[str, np.ndarray]:
    """The target rig of the motion jobs: parents (B,), rest matrices (B, 4, 4), rest vertices (Nt, 3),
    weights (Nt, B), faces (F, 3), connected (B,)."""
    values = (parents, rest_matrices, rest_vertices, np.asarray(skin_weights, np.float32), faces,
              np.asarray(connected, np.int8))
    return dict(zip(RIG_KEYS, values))


def encode(message: dict) -> str:
    """One protocol line."""
    return json.dumps(message) + "\n"


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an ``.npz`` of job arrays (pickle is refused)."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def save_arrays(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write an ``.npz`` atomically: a reader never sees a half-written file."""
    write_npz(path, {k: np.asarray(v) for k, v in arrays.items()}, make_folder=False)
