"""What a batch run has to do: meshes from a folder or a manifest, their output files, their groups,
and which of them a previous run already finished (resume).

Each output ``.npz`` (:func:`sa3df.core.files.save_features`) carries a ``provenance`` record: the
source file's SHA-256 and the settings that made it. An output counts as finished only when it loads,
its arrays fit its mesh, and both match this run; anything else is recomputed and replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sa3df.core import files as sio
from sa3df.features.settings import FeatureSettings

MANIFEST_HELP = ("a text file with one mesh path per line ('#' comments); 'PATH<TAB>GROUP' puts meshes in "
                 "a group trained together; relative paths are read from the manifest's folder")


@dataclass
class BatchItem:
    """One mesh: its file, where its features go, and the SHA-256 of the file's bytes."""

    source: Path
    output: Path
    source_sha: str


@dataclass
class BatchGroup:
    """Meshes computed in one task: one mesh when embedding with a checkpoint, a training group otherwise."""

    name: str
    items: list[BatchItem]
    settings: dict = field(default_factory=dict)

    def provenance(self, item: BatchItem) -> dict:
        """What ``item``'s output records: its source, the run's settings and the group it trained with."""
        return {"source": str(item.source), "source_sha": item.source_sha, "settings": self.settings,
                "group": self.name, "group_sha": [i.source_sha for i in self.items]}


def read_inputs(source: Path, group_by: str = "mesh") -> list[tuple[Path, str]]:
    """(mesh path, group name) from a folder (all meshes below it, sorted) or a manifest file.

    ``group_by`` applies to a folder: "mesh" (each mesh alone) or "folder" (meshes in one sub-folder
    form a group). A manifest names groups itself (default: each mesh alone).
    """
    source = Path(source)
    if source.is_dir():
        paths = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in sio.MESH_SUFFIXES)
        if not paths:
            raise ValueError(f"Folder '{source}' holds no meshes ({', '.join(sio.MESH_SUFFIXES)})")
        if group_by not in ("mesh", "folder"):
            raise ValueError(f"group_by must be 'mesh' or 'folder', got '{group_by}'")
        return [(p, str(p.parent.relative_to(source)) if group_by == "folder" else str(p)) for p in paths]
    if not source.exists():
        raise FileNotFoundError(f"'{source}' does not exist")
    return _read_manifest(source)


def _read_manifest(manifest: Path) -> list[tuple[Path, str]]:
    entries = []
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        path_text, _, group = line.partition("\t")
        path = Path(path_text.strip())
        path = path if path.is_absolute() else manifest.parent / path
        if path.suffix.lower() not in sio.MESH_SUFFIXES:
            raise ValueError(f"Manifest '{manifest}' line {number}: '{path_text.strip()}' is not a mesh file "
                             f"({', '.join(sio.MESH_SUFFIXES)})")
        if not path.is_file():
            raise FileNotFoundError(f"Manifest '{manifest}' line {number}: '{path}' does not exist")
        entries.append((path, group.strip() or str(path)))
    if not entries:
        raise ValueError(f"Manifest '{manifest}' lists no meshes")
    return entries


def output_paths(sources: list[Path], out: Path) -> list[Path]:
    """``out/<path below the meshes' common folder>.npz`` for each mesh; two meshes may not share one."""
    root = Path(os.path.commonpath([p.resolve().parent for p in sources]))
    outputs = [out / p.resolve().relative_to(root).with_suffix(".npz") for p in sources]
    seen: dict[Path, Path] = {}
    for source, output in zip(sources, outputs):
        if output in seen:
            raise ValueError(f"'{seen[output]}' and '{source}' would both write '{output}'; rename one")
        seen[output] = source
    return outputs


def plan_groups(inputs: list[tuple[Path, str]], out: Path, settings: dict, per_mesh: bool) -> list[BatchGroup]:
    """The run's tasks: one group per mesh when ``per_mesh`` (embedding only), else one per named group."""
    outputs = output_paths([p for p, _ in inputs], Path(out))
    members: dict[str, list[BatchItem]] = defaultdict(list)
    for (path, group), output in zip(inputs, outputs):
        members[str(path) if per_mesh else group].append(BatchItem(path, output, file_sha256(path)))
    return [BatchGroup(name, items, settings) for name, items in members.items()]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_finished(group: BatchGroup, item: BatchItem) -> bool:
    """Whether ``item``'s output exists, loads whole, fits its mesh and was made from this file's content,
    these settings and this group (moving the data set elsewhere keeps it finished)."""
    if not item.output.is_file():
        return False
    try:
        with np.load(item.output, allow_pickle=False) as data:
            recorded = json.loads(str(data["provenance"]))
        stored = sio.load_features(item.output)
    except (KeyError, OSError, ValueError, EOFError, zipfile.BadZipFile):
        return False
    n = stored.mesh.n_vertices
    arrays_fit = (stored.base.shape[0] == n == stored.embedding.shape[0]
                  and np.isfinite(stored.base).all() and np.isfinite(stored.embedding).all())
    expected = json.loads(json.dumps(group.provenance(item)))
    return arrays_fit and all(recorded.get(k) == expected[k] for k in ("source_sha", "settings", "group_sha"))


def settings_record(settings: FeatureSettings) -> dict:
    """The settings an output depends on; a checkpoint counts by the SHA-256 of its files."""
    checkpoint_sha = None
    if settings.checkpoint is not None:
        folder = Path(settings.checkpoint)
        parts = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else [folder]
        checkpoint_sha = hashlib.sha256("".join(file_sha256(p) for p in parts).encode()).hexdigest()
    extractor = settings.extractor if isinstance(settings.extractor, str) else settings.extractor.cache_key()
    return {"extractor": extractor, "checkpoint_sha": checkpoint_sha, "steps": int(settings.steps),
            "seed": int(settings.seed), "up_axis": settings.up_axis, "training": settings.training}


def plan_batch(source: Path, out: Path, settings: FeatureSettings, group_by: str = "mesh") -> list[BatchGroup]:
    """The groups of ``sa3df batch SOURCE --out OUT``: with ``settings.steps`` 0 one task per mesh
    (embedding with the checkpoint, or base features only without one), else one per training group."""
    if settings.checkpoint is not None and not Path(settings.checkpoint).exists():
        raise FileNotFoundError(f"Checkpoint '{settings.checkpoint}' does not exist")
    record = settings_record(settings)
    return plan_groups(read_inputs(source, group_by), out, record, per_mesh=settings.steps <= 0)
