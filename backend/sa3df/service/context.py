"""What a job gets and gives: :class:`JobContext` in, :class:`JobOutput` out, and the
:class:`WorkerState` a worker keeps between jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from sa3df.core.progress import ProgressFn


@dataclass
class JobOutput:
    """Arrays to send back, plus small JSON-able facts for the user (counts, warnings)."""

    arrays: dict[str, np.ndarray]
    info: dict = field(default_factory=dict)


class WorkerState:
    """What a worker keeps between jobs: the feature path's caches (base features, anchor pools and
    whole results, in memory and under the settings' ``cache_dir``)."""

    def __init__(self):
        self._caches = None
        self._folder = None

    def caches(self, folder, limit_mb: float | None = None):
        """The :class:`~sa3df.features.pipeline.PipelineCaches` for ``folder`` (new ones when it changes),
        each folder kept under ``limit_mb``."""
        from sa3df.features.pipeline import PipelineCaches

        if self._caches is None or folder != self._folder:
            self._caches, self._folder = PipelineCaches.in_folder(folder, results_on_disk=True), folder
        self._caches.set_limit(limit_mb)
        return self._caches


@dataclass
class JobContext:
    """One job's ``inputs`` (arrays, keys in :mod:`sa3df.service.protocol`), ``params`` (JSON values),
    ``progress`` (raises :class:`~sa3df.core.progress.Cancelled` when cancelled) and the worker's ``state``.
    ``job_names`` lists the jobs the worker runs."""

    inputs: dict[str, np.ndarray]
    params: dict
    progress: ProgressFn | None
    state: WorkerState
    job_names: tuple[str, ...] = ()


JobFn = Callable[[JobContext], JobOutput]
