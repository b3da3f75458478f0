"""Device choice in one place: CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import contextlib
import os
import time

import torch


def choose_device(preference: str | None = "auto") -> torch.device:
    """Return a torch device for ``preference`` ("auto", "cpu", "cuda", "cuda:1", "mps").

    "auto" picks CUDA when present, then MPS, then CPU. An explicit device that is not
    available raises ``ValueError`` naming it, rather than silently falling back.
    """
    pref = (preference or "auto").lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(pref)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Device '{preference}' was asked for, but CUDA is not available here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"Device '{preference}' was asked for, but MPS is not available here")
    return device


def default_dtype(device: torch.device) -> torch.dtype:
    """Half precision for inference of large image models on GPUs, float32 elsewhere."""
    return torch.float16 if device.type in ("cuda", "mps") else torch.float32


def idle_cpu_count(sample_seconds: float = 0.1) -> float | None:
    """How many CPUs no process is using right now; None where that cannot be known.

    Linux: the idle share of /proc/stat over ``sample_seconds`` (the caller sleeps meanwhile, so its
    own work is not counted); macOS and other Unix: CPUs minus the one-minute load average.
    """
    cpus = _usable_cpus()
    try:
        before = _cpu_ticks()
        time.sleep(sample_seconds)
        after = _cpu_ticks()
        idle, total = (a - b for a, b in zip(after, before))
        return cpus * idle / total if total > 0 else None
    except OSError:
        pass
    if hasattr(os, "getloadavg"):
        return max(cpus - os.getloadavg()[0], 0.0)
    return None


def idle_thread_count(limit: int | None = None) -> int:
    """Torch CPU threads for small, fast steps: one per idle CPU (:func:`idle_cpu_count`), at least
    one, at most ``limit`` and torch's own setting; one where idleness cannot be known. Torch's
    threads spin-wait between steps, so a thread on a core another process is using costs more than
    it gives (training steps measured on 2 cores: 12 ms on one thread, 7 ms on two when idle, 22 ms on
    two with one other busy process)."""
    idle = idle_cpu_count()
    if idle is None:
        return 1
    return int(min(max(round(idle), 1), limit or torch.get_num_threads(), torch.get_num_threads()))


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _cpu_ticks() -> tuple[int, int]:
    """(idle + iowait, total) jiffies of all CPUs, from the first line of /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    return fields[3] + fields[4], sum(fields[:8])


@contextlib.contextmanager
def cpu_threads(count: int | None):
    """Torch's CPU thread count set to ``count`` inside the block (None: left as is), restored after."""
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
