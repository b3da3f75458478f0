"""The worker's jobs, registered by name: arrays in, arrays out.

A job is a function ``fn(ctx: JobContext) -> JobOutput`` (:mod:`sa3df.service.context`). It reads
``ctx.inputs`` (arrays, keys in :mod:`sa3df.service.protocol`) and ``ctx.params`` (JSON values, the
feature settings under ``"features"``), reports through ``ctx.progress`` and returns arrays.
"""

from __future__ import annotations

import numpy as np

from sa3df.core.progress import ProgressFn
from sa3df.service import feature_jobs, motion_jobs, protocol
from sa3df.service.context import JobContext, JobFn, JobOutput, WorkerState

JOBS: dict[str, JobFn] = {
    protocol.ENVIRONMENT: feature_jobs.environment_job,
    protocol.COMPUTE_FEATURES: feature_jobs.compute_features_job,
    protocol.CORRESPONDENCE: feature_jobs.correspondence_job,
    protocol.SEGMENT: feature_jobs.segment_job,
    protocol.TRANSFER_WEIGHTS: feature_jobs.transfer_weights_job,
    protocol.TRANSFER_MOTION: motion_jobs.transfer_motion_job,
    protocol.ALIGN_POSE: motion_jobs.align_pose_job,
}


def register(name: str, fn: JobFn) -> None:
    """Add the job ``name`` (a front end or a test with its own job); an existing name is an error."""
    if name in JOBS:
        raise ValueError(f"A job named '{name}' is already registered")
    JOBS[name] = fn


def job_names() -> list[str]:
    return sorted(JOBS)


def run_job(name: str, inputs: dict[str, np.ndarray], params: dict, progress: ProgressFn | None = None,
            state: WorkerState | None = None) -> JobOutput:
    """Run the job ``name``; raises ``ValueError`` for an unknown name."""
    if name not in JOBS:
        raise ValueError(f"Unknown job '{name}' (known: {', '.join(job_names())})")
    context = JobContext(inputs, params, progress, state or WorkerState(), tuple(job_names()))
    output = JOBS[name](context)
    return output if isinstance(output, JobOutput) else JobOutput(dict(output))
