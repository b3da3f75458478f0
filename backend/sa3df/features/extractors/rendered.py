"""The shared loop of image-model extractors: render views, featurise images, lift to vertices.

Subclasses say how a batch of rendered views becomes per-view feature grids
(:meth:`RenderedExtractor.featurize`); rendering, batching, progress, cancellation and lifting are
here. Rendering happens in the mesh's normalised frame (box centre at the origin, max |coord| 1),
which keeps Embree's float32 exact and the camera distances meaningful for any input scale.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
import torch

from sa3df.core.mesh import Mesh
from sa3df.core.progress import ProgressFn, report, sub_progress
from sa3df.features.extractors.base import BaseExtractor
from sa3df.features.extractors.cameras import make_rig
from sa3df.features.extractors.lift import VertexAccumulator, lift_grids
from sa3df.features.extractors.render import Renderer, RenderedViews


class RenderedExtractor(BaseExtractor):
    """Base of extractors that look at rendered images of the mesh.

    Settings shared by all: ``views`` (None: 100 on a GPU, ``cpu_views`` on CPU), ``rig``
    ("fibonacci" or Diff3F's "grid"), ``resolution`` (render side, px), ``up_axis`` ("y" for most
    files, "z" for Blender scenes; cameras keep it pointing up in the images), ``batch_size``
    (views per model call; None: 4 on a GPU, 1 on CPU), ``engine`` (ray caster), ``device``,
    ``allow_downloads`` (None: from ``SA3DF_ALLOW_DOWNLOADS``), ``weights_dir`` (a folder of model
    folders or a hub cache, see :func:`.weights.resolve`).
    """

    cpu_views = 24
    lift_weights: list[float] | None = None

    def __init__(self, device: str = "auto", views: int | None = None, rig: str = "fibonacci",
                 resolution: int = 512, up_axis: str = "y", batch_size: int | None = None,
                 engine: str = "auto", allow_downloads: bool | None = None, weights_dir: str | None = None):
        super().__init__(device)
        on_gpu = self.device.type in ("cuda", "mps")
        self.views = int(views) if views else (100 if on_gpu else self.cpu_views)
        self.rig, self.resolution, self.up_axis, self.engine = rig, int(resolution), up_axis, engine
        self.batch_size = int(batch_size) if batch_size else (4 if on_gpu else 1)
        self.allow_downloads, self.weights_dir = allow_downloads, weights_dir

    def cache_key(self) -> str:
        return f"{self.name}-{self.rig}{self.views}-r{self.resolution}-up{self.up_axis}"

    @abstractmethod
    def featurize(self, views: RenderedViews, mesh: Mesh,
                  progress: ProgressFn | None = None) -> list[list[torch.Tensor]]:
        """Per view of the batch, its feature blocks [(D_i, h_i, w_i), ...] covering the image.
        ``progress`` spans this batch; long featurisers report (and may be cancelled) through it."""

    def load(self) -> None:
        """Load models (once per instance; :meth:`release` frees them)."""

    def extract(self, mesh: Mesh, progress: ProgressFn | None = None) -> np.ndarray:
        """(mesh.n_vertices, self.dim) float32 features: the lifted, view-averaged pixel features."""
        report(progress, 0.0, f"{self.name}: loading models")
        self.load()
        frame = mesh.normalized()
        renderer = Renderer(frame.vertices, frame.faces, self.resolution, self.engine)
        cameras = make_rig(self.rig, frame.vertices, self.views, up_axis=self.up_axis)
        accumulator = VertexAccumulator(frame.n_vertices, self.dim, self.device)
        for start in range(0, len(cameras), self.batch_size):
            end = min(start + self.batch_size, len(cameras))
            report(progress, start / len(cameras), f"{self.name}: views {start + 1}-{end} of {len(cameras)}")
            views = renderer.render(cameras[start:end])
            with torch.inference_mode():
                batch_progress = sub_progress(progress, start / len(cameras), end / len(cameras))
                grids = self.featurize(views, mesh, batch_progress)
                lift_grids(accumulator, views, frame.faces, grids, self.lift_weights)
        features = accumulator.result(frame.vertices)
        report(progress, 1.0, f"{self.name}: done")
        return np.ascontiguousarray(features, dtype=np.float32)


def images_to_tensor(images: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(B, H, W, C) float images in [0, 1] to a (B, C, H, W) tensor."""
    return torch.as_tensor(images, dtype=torch.float32).permute(0, 3, 1, 2).to(device, dtype)
