"""The one settings object of the feature path: what the CLI, the worker and the demo hand to
:func:`sa3df.features.pipeline.compute_surface_features`. No torch here: the add-on's side can import it.

The worker receives these settings as JSON (``params["features"]``, see :mod:`sa3df.service.protocol`);
:meth:`FeatureSettings.from_params` reads that form and :meth:`FeatureSettings.to_params` writes it.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields

# Test-time training steps per named effort level (the add-on's "Training Effort").
EFFORT_STEPS = {"off": 0, "fast": 300, "normal": 600, "thorough": 2000}
DEFAULT_EFFORT = "fast"
# Meshes above 1.25 x this many vertices are computed on a simplified proxy (sa3df.features.proxy).
DEFAULT_PROXY_VERTICES = 6000
UP_AXES = ("x", "y", "z")


@dataclass(frozen=True)
class FeatureSettings:
    """How base features are made and the surface-aware network is trained or loaded.

    - ``extractor``: "geometric" (offline default), "dino", "diff3f", "auto", or an extractor instance;
    - ``steps``: test-time training steps on the given meshes (0: embed with ``checkpoint`` only, or,
      without one, use the unit-length base features as the embedding); ``seed``; ``device``;
    - ``checkpoint``: a trained network folder (with ``steps`` > 0 it is fine-tuned);
    - ``weights_dir``: model folders for dino/diff3f (see :func:`sa3df.features.extractors.weights.resolve`);
      ``allow_downloads``: let them fetch missing weights;
    - ``cache_dir``: base features, anchor pools (and, for the worker, whole results) on disk;
      ``cache_limit_mb``: the size limit of each of its folders, least recently used entries removed
      first (None: ``$SA3DF_CACHE_LIMIT_MB``, else 2048; 0: no limit);
    - ``up_axis`` ("x", "y", "z" or None): turn the meshes to face alike about it before base features,
      and orbit the rendered extractors' cameras around it (None: meshes as given, cameras around y);
    - ``proxy_vertices``: a mesh with more than 1.25× this many vertices is computed on a simplified
      proxy of about this size and its features carried to every vertex (0 or None: full resolution);
    - ``training``: further :class:`sa3df.features.train.TrainConfig` fields (``lr``, ``cpu_threads``...).
    """

    extractor: object = "geometric"
    steps: int = EFFORT_STEPS["normal"]
    seed: int = 0
    device: str = "auto"
    checkpoint: str | os.PathLike | None = None
    weights_dir: str | os.PathLike | None = None
    cache_dir: str | os.PathLike | None = None
    cache_limit_mb: float | None = None
    allow_downloads: bool = False
    up_axis: str | None = None
    proxy_vertices: int | None = DEFAULT_PROXY_VERTICES
    training: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.up_axis not in (None, *UP_AXES):
            raise ValueError(f"up axis must be one of x, y, z, not '{self.up_axis}'")
        if int(self.steps) < 0:
            raise ValueError(f"Training steps must be 0 or more, got {self.steps}")
        if self.cache_limit_mb is not None and float(self.cache_limit_mb) < 0:
            raise ValueError(f"The cache limit must be 0 (none) or more megabytes, got {self.cache_limit_mb}")

    @classmethod
    def for_effort(cls, effort: str, **settings) -> FeatureSettings:
        """Settings whose ``steps`` are those of the named ``effort`` level ("off", "fast", ...)."""
        if effort not in EFFORT_STEPS:
            raise ValueError(f"Unknown training effort '{effort}' (use one of {', '.join(EFFORT_STEPS)})")
        return cls(steps=EFFORT_STEPS[effort], **settings)

    @classmethod
    def from_params(cls, params: dict | None) -> FeatureSettings:
        """Read the JSON form: the field names, with the named ``effort`` level (default "fast") or a
        number of ``steps`` (not both). Unknown keys are an error: a misspelt setting is never ignored."""
        params = {k: v for k, v in dict(params or {}).items() if v is not None}
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - names - {"effort"})
        if unknown:
            known = ", ".join(["effort", *sorted(names)])
            raise ValueError(f"Unknown feature settings: {', '.join(unknown)} (known: {known})")
        if "steps" in params and "effort" in params:
            raise ValueError("Give the training effort or a number of steps, not both")
        if "steps" in params:
            return cls(**params)
        return cls.for_effort(params.pop("effort", DEFAULT_EFFORT), **params)

    def to_params(self) -> dict:
        """The JSON form (the extractor must be named, not an instance)."""
        if not isinstance(self.extractor, str):
            raise ValueError("Settings with an extractor instance cannot be sent as JSON")
        return {k: (os.fspath(v) if isinstance(v, os.PathLike) else v) for k, v in asdict(self).items()}
