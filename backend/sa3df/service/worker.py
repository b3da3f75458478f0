"""The backend worker process: runs sa3df jobs for a front end (the Blender add-on) over pipes.

Start it as ``python -m sa3df.service.worker``. It runs one job at a time, so a torch crash or an
out-of-memory kill ends this process, never the caller's.

The messages and the array files are defined in :mod:`sa3df.service.protocol`. Anything the backend
libraries print goes to stderr: stdout carries protocol lines only.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
import traceback
from typing import IO

from sa3df.core.progress import Cancelled
from sa3df.service import jobs, protocol
from sa3df.service.protocol import load_arrays, save_arrays


class ProtocolWriter:
    """Writes event lines to the protocol stream; safe to call from several threads."""

    def __init__(self, stream: IO[str]):
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, event: str, **fields) -> None:
        line = protocol.encode({"event": event, **fields})
        with self._lock:
            self._stream.write(line)
            self._stream.flush()


def _protocol_stdout() -> IO[str]:
    """Keep the real stdout for protocol lines and point file descriptor 1 at stderr, so stray
    prints from torch, tqdm or C extensions cannot corrupt the protocol."""
    stream = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return stream


class Worker:
    """Reads requests on a thread, runs jobs on the main thread, streams events back."""

    def __init__(self, requests: IO[str], writer: ProtocolWriter):
        self._requests = requests
        self._writer = writer
        self._queue: queue.Queue[dict | None] = queue.Queue()
        self._cancelled: set[str] = set()
        self._closing = False  # the front end went away: stop the running job at its next step
        self._lock = threading.Lock()
        self.context = jobs.WorkerState()

    def serve(self) -> None:
        threading.Thread(target=self._read_requests, name="sa3df-requests", daemon=True).start()
        from sa3df import __version__

        self._writer.send(protocol.READY, pid=os.getpid(), jobs=jobs.job_names(), version=__version__,
                          python=".".join(map(str, sys.version_info[:3])))
        while (request := self._queue.get()) is not None:
            self._run(request)

    def _read_requests(self) -> None:
        for line in self._requests:
            line = line.strip()
            if not line:
                continue
            try:
                request = json.loads(line)
            except json.JSONDecodeError:
                self._writer.send(protocol.ERROR, job_id=None, kind="ProtocolError", message=f"not JSON: {line[:200]}")
                continue
            if not isinstance(request, dict):  # valid JSON but no request: answer and keep serving
                self._writer.send("error", job_id=None, kind="ProtocolError",
                                  message=f"a request must be a JSON object, got: {line[:200]}")
                continue
            op = request.get("op")
            if op == protocol.RUN:
                self._queue.put(request)
            elif op == protocol.CANCEL:
                with self._lock:
                    self._cancelled.add(str(request.get("job_id")))
            elif op == protocol.PING:
                self._writer.send(protocol.PONG)
            elif op == protocol.QUIT:
                break
            else:
                self._writer.send("error", job_id=request.get("job_id"), kind="ProtocolError",
                                  message=f"unknown op {op!r} (use run, cancel, ping or quit)")
        with self._lock:  # stdin closed (Blender quit or crashed) or quit: stop, then exit
            self._closing = True
        self._queue.put(None)

    def _is_cancelled(self, job_id: str) -> bool:
        with self._lock:
            return self._closing or job_id in self._cancelled

    def _run(self, request: dict) -> None:
        job_id = str(request.get("job_id"))
        started = time.perf_counter()
        last_sent = [0.0]

        def progress(fraction: float, message: str = "") -> None:
            if self._is_cancelled(job_id):
                raise Cancelled(f"job {job_id} was cancelled")
            now = time.perf_counter()
            if now - last_sent[0] >= 0.05 or fraction >= 1.0:  # keep the pipe quiet in tight loops
                last_sent[0] = now
                self._writer.send(protocol.PROGRESS, job_id=job_id, fraction=float(fraction), message=str(message))

        try:
            missing = [key for key in ("name", "output") if not isinstance(request.get(key), str)]
            if missing:  # refuse before the work, not after it
                raise ValueError(f"the run request lacks {' and '.join(repr(k) for k in missing)}")
            if self._is_cancelled(job_id):
                raise Cancelled(f"job {job_id} was cancelled before it started")
            inputs = load_arrays(request["input"]) if request.get("input") else {}
            output = jobs.run_job(
                request["name"], inputs, request.get("params") or {}, progress, self.context
            )
            progress(1.0, "writing results")
            save_arrays(request["output"], output.arrays)
        except Cancelled:
            self._writer.send(protocol.CANCELLED, job_id=job_id)
            return
        except Exception as error:  # noqa: BLE001 - every failure goes back to the caller as a message
            self._writer.send(
                protocol.ERROR, job_id=job_id, kind=type(error).__name__, message=str(error) or type(error).__name__,
                traceback=traceback.format_exc(),
            )
            return
        finally:
            with self._lock:
                self._cancelled.discard(job_id)
        self._writer.send(
            protocol.DONE, job_id=job_id, output=request["output"], info=output.info,
            seconds=round(time.perf_counter() - started, 3),
        )


def main() -> None:
    writer = ProtocolWriter(_protocol_stdout())
    Worker(sys.stdin, writer).serve()


if __name__ == "__main__":
    main()
