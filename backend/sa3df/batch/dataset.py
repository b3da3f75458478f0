"""Feature archives (``sa3df batch`` or ``sa3df features`` outputs) read back as a training set, so
``sa3df train feats/ --out net/`` trains on a data set's stored base features without recomputing them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from sa3df.core import files as sio
from sa3df.core.mesh import Mesh
from sa3df.core.progress import ProgressFn
from sa3df.features.extractors.base import BaseExtractor
from sa3df.features.pipeline import FeatureCache, PipelineCaches
from sa3df.features.settings import FeatureSettings


class StoredFeatures(BaseExtractor):
    """Serves the base features of loaded archives by mesh content, under the extractor name that made them."""

    def __init__(self, items: list[sio.MeshFeatures]):
        super().__init__(device="cpu")
        names = sorted({item.extractor for item in items})
        widths = sorted({item.base.shape[1] for item in items})
        if len(names) != 1 or len(widths) != 1:
            raise ValueError(f"Feature archives mix base features ({', '.join(names)}; widths {widths}); "
                             "train on archives made with one extractor")
        self.name, self.dim = names[0], widths[0]
        self._base = {item.mesh.content_hash(): item.base for item in items}

    def extract(self, mesh: Mesh, progress: ProgressFn | None = None) -> np.ndarray:
        try:
            return self._base[mesh.content_hash()]
        except KeyError:
            raise ValueError(f"Mesh '{mesh.name}' is not one of the loaded feature archives") from None

    def cache_key(self) -> str:
        return f"{self.name}-stored"


def feature_archives(paths: list[Path]) -> list[Path]:
    """The ``.npz`` files given, with each folder replaced by the archives below it (sorted)."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            below = sorted(p for p in path.rglob("*.npz") if not p.name.startswith("."))
            if not below:
                raise ValueError(f"Folder '{path}' holds no feature archives (.npz)")
            found += below
        elif path.suffix == ".npz":
            if not path.is_file():
                raise FileNotFoundError(f"'{path}' does not exist")
            found.append(path)
        else:
            raise ValueError(f"'{path}': give feature archives (.npz) or folders of them, not a mix with meshes")
    return found


def archive_training_inputs(paths: list[Path], settings: FeatureSettings) -> tuple[list[Mesh], FeatureSettings,
                                                                                   PipelineCaches]:
    """For training on the archives at ``paths`` (files or folders): their meshes, ``settings`` whose
    extractor serves the stored base features, and caches that keep anchor pools in ``settings.cache_dir``
    but do not store those base features a second time."""
    items = [sio.load_features(p) for p in feature_archives(paths)]
    caches = PipelineCaches.in_folder(settings.cache_dir, limit_mb=settings.cache_limit_mb)
    return ([item.mesh for item in items], dataclasses.replace(settings, extractor=StoredFeatures(items)),
            dataclasses.replace(caches, features=FeatureCache()))
