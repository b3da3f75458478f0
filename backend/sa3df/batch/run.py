"""The driver of ``sa3df batch``: start or join Ray, hand it one task per group, write what comes back.

Ray does the scheduling (resource requests per task, retries when a worker dies). The driver only
skips finished outputs, submits every remaining group at once, and writes each result atomically as it
arrives, with a progress bar and an end summary.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from sa3df.batch.plan import BatchGroup, is_finished
from sa3df.batch.tasks import GroupResult, compute_group
from sa3df.core import files as sio
from sa3df.core.storage import atomic_write
from sa3df.features.settings import FeatureSettings


@dataclass
class RaySettings:
    """Where tasks run and what each asks for. ``address`` None starts a local Ray (``local_cpus`` CPUs,
    default all) unless this process is already connected; "auto" or "HOST:PORT" joins a cluster."""

    address: str | None = None
    local_cpus: int | None = None
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0
    retries: int = 3


@dataclass
class BatchSummary:
    """Counts of meshes, seconds of wall time, and ``failed``: mesh path -> reason."""

    done: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def meshes_per_minute(self) -> float:
        return 60.0 * self.done / self.seconds if self.seconds > 0 else 0.0

    def text(self) -> str:
        lines = [f"batch: {self.done} done, {self.skipped} skipped, {len(self.failed)} failed in "
                 f"{self.seconds:.1f} s ({self.meshes_per_minute:.1f} meshes/min)"]
        lines += [f"  failed {path}: {reason}" for path, reason in self.failed.items()]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"done": self.done, "skipped": self.skipped, "failed": self.failed, "seconds": self.seconds,
                "meshes_per_minute": self.meshes_per_minute}


def run_batch(groups: list[BatchGroup], features: FeatureSettings, ray_settings: RaySettings | None = None,
              summary_path: Path | None = None) -> BatchSummary:
    """Compute every group's features on Ray; skip meshes whose outputs are finished (a group reruns
    whole when any member is not). Writes ``summary_path`` (JSON) at the end when given."""
    ray_settings = ray_settings or RaySettings()
    require_ray()
    start = time.perf_counter()
    summary = BatchSummary()
    todo = []
    for group in groups:
        if all(is_finished(group, item) for item in group.items):
            summary.skipped += len(group.items)
        else:
            todo.append(group)
    if todo:
        _run_on_ray(todo, features, ray_settings, summary)
    summary.seconds = time.perf_counter() - start
    if summary_path is not None:
        text = json.dumps(summary.to_dict(), indent=2).encode()
        atomic_write(Path(summary_path), lambda tmp: tmp.write_bytes(text))
    return summary


def _run_on_ray(groups: list[BatchGroup], features: FeatureSettings, settings: RaySettings,
                summary: BatchSummary) -> None:
    import ray
    from tqdm.auto import tqdm

    started_here = _connect(settings)
    try:
        task = ray.remote(compute_group).options(
            num_cpus=settings.cpus_per_task, num_gpus=settings.gpus_per_task, max_retries=settings.retries,
            retry_exceptions=False)
        threads = max(1, int(settings.cpus_per_task))
        shared = ray.put(features)  # one copy in the object store, not one per task
        pending = {task.remote([str(i.source) for i in g.items], shared, threads): g for g in groups}
        total = sum(len(g.items) for g in groups)
        with tqdm(total=total, unit="mesh", desc="batch", disable=None, smoothing=0.1) as bar:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                group = pending.pop(ready[0])
                _store(group, _result(ready[0], settings.retries), summary)
                bar.update(len(group.items))
                bar.set_postfix(done=summary.done, failed=len(summary.failed))
    finally:
        if started_here:
            ray.shutdown()


def require_ray() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        raise RuntimeError("sa3df batch needs Ray: pip install 'sa3df[ray]'") from None


def _connect(settings: RaySettings) -> bool:
    """Join the given cluster, reuse this process's connection, or start a local Ray; True if started here."""
    import ray

    if ray.is_initialized():
        return False
    if settings.address is not None:
        import sa3df

        try:  # ship this sa3df to the cluster's workers, so they run the same code as the driver
            ray.init(address=settings.address, runtime_env={"py_modules": [sa3df]}, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise RuntimeError(f"Could not join the Ray cluster at '{settings.address}': {error}") from None
    else:
        ray.init(num_cpus=settings.local_cpus, include_dashboard=False, log_to_driver=False)
    return True


def _result(ref, retries: int) -> GroupResult:
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as error:  # an unexpected exception inside the task: not retried
        cause = getattr(error, "cause", None) or error
        return GroupResult([], f"{type(cause).__name__}: {cause}")
    except ray.exceptions.RayError as error:  # the worker died more often than --retries allows, or Ray failed
        lines = str(error).strip().splitlines()
        return GroupResult([], f"{type(error).__name__} after {retries} retries: {lines[0] if lines else ''}")


def _store(group: BatchGroup, result: GroupResult, summary: BatchSummary) -> None:
    if result.error is not None:
        summary.failed.update({str(item.source): result.error for item in group.items})
        return
    for item, features in zip(group.items, result.features):
        item.output.parent.mkdir(parents=True, exist_ok=True)
        sio.save_features(item.output, features, provenance=group.provenance(item))
        summary.done += 1
