"""Progress reporting and cancellation shared by every long-running backend function.

Long functions take ``progress: ProgressFn | None``. They call it as ``progress(fraction, message)``
with ``fraction`` in [0, 1]. A caller cancels a job by raising :class:`Cancelled` from inside
the callback (the Blender worker does that when the user clicks Cancel), so cancellation
happens between steps and never leaves half-written results.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, TypeVar

ProgressFn = Callable[[float, str], None]
T = TypeVar("T")


class Cancelled(Exception):
    """Raised (by a progress callback) to stop a job between two steps."""


def report(progress: ProgressFn | None, fraction: float, message: str = "") -> None:
    """Call ``progress`` if given; clamps ``fraction`` to [0, 1]."""
    if progress is not None:
        progress(min(1.0, max(0.0, float(fraction))), message)


def sub_progress(progress: ProgressFn | None, start: float, end: float) -> ProgressFn | None:
    """A callback mapping [0, 1] onto [start, end] of ``progress`` (for nested stages)."""
    if progress is None:
        return None
    return lambda f, msg="": progress(start + (end - start) * min(1.0, max(0.0, f)), msg)


def steps(items: Iterable[T], total: int, progress: ProgressFn | None, message: str) -> Iterator[T]:
    """Iterate ``items`` reporting progress after each; shows a tqdm bar when no callback is given
    and the process has a terminal (the CLI), stays silent otherwise."""
    if progress is None:
        from tqdm.auto import tqdm

        yield from tqdm(items, total=total, desc=message, leave=False, disable=None)
        return
    report(progress, 0.0, message)
    for i, item in enumerate(items):
        yield item
        report(progress, (i + 1) / max(total, 1), message)
