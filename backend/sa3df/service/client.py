"""The front end's side of the backend worker process (``python -m sa3df.worker``): the Blender add-on
uses it. No bpy and no torch here (only numpy and :mod:`sa3df.service.protocol`), so Blender's own
process stays free of them.

One worker per Blender session, started on first use and kept (models and feature caches stay warm).
A job is a message; arrays go through ``.npz`` files in a temporary folder; the worker streams
progress lines back, read by a thread into a queue. Cancel asks the worker to stop between two steps;
``kill`` ends it at once (the next job starts a new one). If the worker dies (a torch crash, out of
memory), the running job fails with a message naming the exit code and the end of the worker's log:
Blender itself never goes down with it.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sa3df.service import protocol

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"
CANCEL_GRACE_SECONDS = 5.0  # after this long without the worker confirming a cancel, it is killed
LOG_FOLDER = Path(tempfile.gettempdir(), "sa3df-logs")  # worker-<start time>-<pid>.log, the newest kept
KEPT_LOGS = 5


class WorkerError(RuntimeError):
    """A job failed; the message is meant for the user."""


@dataclass
class Job:
    """One request to the worker. ``state`` moves from "running" to "done", "failed" or "cancelled"."""

    job_id: str
    name: str
    folder: Path
    state: str = RUNNING
    fraction: float = 0.0
    message: str = "starting"
    error: str | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    cancel_requested_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.state != RUNNING


class WorkerClient:
    """Starts, talks to and stops one backend worker process.

    ``python`` defaults to ``sys.executable`` (Blender's own Python inside Blender, the venv's with
    the bpy module). ``pythonpath``: folders put first on the worker's ``PYTHONPATH``; the bundled
    backend passes this process's ``sys.path`` (the extension's wheels), while another interpreter
    (managed or external, maybe another Python version) gets none: it finds ``sa3df`` itself.
    ``expected_version``: the add-on's version; a worker whose ``sa3df`` differs is refused by name.
    """

    def __init__(self, python: str | None = None, extra_env: dict[str, str] | None = None,
                 pythonpath: list[str] | None = None, expected_version: str | None = None):
        self.python = python or sys.executable
        self.extra_env = dict(extra_env or {})
        self.pythonpath = [p for p in (sys.path if pythonpath is None and python is None else pythonpath or []) if p]
        self.expected_version = expected_version
        self.environment: dict | None = None  # the last "environment" job's report (versions, device)
        self.process: subprocess.Popen | None = None
        self.active: Job | None = None
        self.log_path: Path | None = None
        self._events: queue.Queue[dict] = queue.Queue()
        self._counter = 0
        self._log_file = None

    # -- process -------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.alive else None

    def start(self) -> None:
        """Start the worker if it is not running (returns at once; it imports torch meanwhile)."""
        if self.alive:
            return
        env = dict(os.environ)
        inherited = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if self.pythonpath or inherited:
            env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(self.pythonpath + inherited))
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.extra_env)
        self._close_log()
        self.log_path = new_log_path()
        self._log_file = open(self.log_path, "w", encoding="utf-8")
        self._events = queue.Queue()  # events of a previous process are dropped with it
        self.process = subprocess.Popen(
            [self.python, "-m", "sa3df.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._log_file, text=True, encoding="utf-8", env=env,
        )
        threading.Thread(target=self._read_events, args=(self.process, self._events), daemon=True).start()

    @staticmethod
    def _read_events(process: subprocess.Popen, events: queue.Queue) -> None:
        for line in process.stdout:
            try:
                events.put(json.loads(line))
            except json.JSONDecodeError:
                continue  # only protocol lines reach stdout; anything else is ignored
        events.put({"event": "_exit"})

    def _send(self, request: dict) -> None:
        if not self.alive:
            raise WorkerError("The sa3df worker is not running")
        try:
            self.process.stdin.write(protocol.encode(request))
            self.process.stdin.flush()
        except (BrokenPipeError, OSError) as error:
            raise WorkerError(f"The sa3df worker stopped accepting requests ({error})") from None

    def kill(self) -> None:
        """End the worker at once (the running job fails; the next job starts a new worker)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.poll()

    def release(self, timeout: float = 5.0) -> None:
        """Stop the worker politely (frees its memory); kills it if it does not quit in ``timeout``."""
        if self.alive:
            try:
                self._send({"op": protocol.QUIT})
                self.process.wait(timeout=timeout)
            except (WorkerError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(timeout=10)
        self.poll()
        if self.active is not None and not self.active.finished:  # its exit event may not have arrived yet
            self._finish(self.active, CANCELLED, None)  # removes the job folder
        self._close_log()
        self.process = None

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, lines: int = 12) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return "\n".join(text[-lines:])

    # -- jobs ----------------------------------------------------------------------------------
    def submit(self, name: str, arrays: dict[str, np.ndarray], params: dict) -> Job:
        """Send a job; returns its :class:`Job` at once. One job runs at a time."""
        self.poll()
        if self.active is not None and not self.active.finished:
            raise WorkerError(f"Another sa3df job ('{self.active.name}') is still running")
        self.start()
        self._counter += 1
        folder = Path(tempfile.mkdtemp(prefix=f"sa3df-{name}-"))
        protocol.save_arrays(folder / "input.npz", arrays)
        job = Job(job_id=f"{os.getpid()}-{self._counter}", name=name, folder=folder)
        self.active = job
        try:
            self._send({"op": protocol.RUN, "job_id": job.job_id, "name": name, "input": str(folder / "input.npz"),
                        "output": str(folder / "output.npz"), "params": params})
        except WorkerError as error:
            self._finish(job, FAILED, str(error))
        return job

    def cancel(self, job: Job | None = None) -> None:
        """Ask the worker to stop ``job`` (default: the active one) between two steps."""
        job = job or self.active
        if job is None or job.finished:
            return
        job.cancel_requested_at = job.cancel_requested_at or time.monotonic()
        job.message = "cancelling"
        try:
            self._send({"op": protocol.CANCEL, "job_id": job.job_id})
        except WorkerError:
            self.poll()

    def poll(self) -> Job | None:
        """Apply every event that has arrived; returns the active job (None if there is none)."""
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            self._apply(event)
        job = self.active
        if job is not None and not job.finished and job.cancel_requested_at is not None:
            if time.monotonic() - job.cancel_requested_at > CANCEL_GRACE_SECONDS:
                self._finish(job, CANCELLED, None)  # first, so the kill's own poll sees it finished
                self.kill()  # a long step that never returns to a progress call: stop it hard
        return job

    def wait(self, job: Job, on_progress=None, poll_seconds: float = 0.05) -> Job:
        """Block until ``job`` finishes; ``on_progress(fraction, message)`` sees each update.
        Ctrl-C cancels the job (and kills the worker if it does not stop soon)."""
        seen = None
        try:
            while not job.finished:
                try:
                    self._apply(self._events.get(timeout=poll_seconds))
                except queue.Empty:
                    pass
                self.poll()
                if on_progress is not None and (job.fraction, job.message) != seen:
                    seen = (job.fraction, job.message)
                    on_progress(job.fraction, job.message)
        except KeyboardInterrupt:
            self.cancel(job)
            while not job.finished:
                time.sleep(poll_seconds)
                self.poll()
        return job

    def _apply(self, event: dict) -> None:
        kind = event.get("event")
        job = self.active
        if kind == "_exit":
            if job is not None and not job.finished:
                code = self.process.wait(timeout=10) if self.process is not None else None
                if job.cancel_requested_at is not None:
                    self._finish(job, CANCELLED, None)
                else:
                    tail = self.log_tail()
                    self._finish(job, FAILED, f"The sa3df worker process stopped unexpectedly (exit code {code})"
                                 + (f"; its last output:\n{tail}" if tail else ""))
            return
        if kind == protocol.READY:
            self._check_version(event, job)
            return
        if job is None or job.finished or event.get("job_id") != job.job_id:
            return
        if kind == protocol.PROGRESS:
            job.fraction = float(event.get("fraction", job.fraction))
            job.message = str(event.get("message", ""))
        elif kind == protocol.DONE:
            try:
                job.arrays = protocol.load_arrays(event["output"])
                job.info = dict(event.get("info") or {})
                self._finish(job, DONE, None)
            except (OSError, ValueError, KeyError) as error:
                self._finish(job, FAILED, f"Could not read the result of job '{job.name}': {error}")
        elif kind == protocol.CANCELLED:
            self._finish(job, CANCELLED, None)
        elif kind == protocol.ERROR:
            self._finish(job, FAILED, f"{event.get('kind', 'Error')}: {event.get('message', '')}")
            job.info = {"traceback": event.get("traceback", "")}

    def _check_version(self, ready: dict, job: Job | None) -> None:
        """A backend of another version than the add-on's is stopped with a message saying so."""
        found = ready.get("version")
        if self.expected_version is None or found == self.expected_version:
            return
        if job is not None and not job.finished:
            self._finish(job, FAILED, f"The backend at {self.python} is sa3df {found or '(unknown version)'}, but "
                         f"this add-on needs sa3df {self.expected_version}: reinstall it (Preferences > Backend)")
        self.kill()

    def _finish(self, job: Job, state: str, error: str | None) -> None:
        job.state, job.error = state, error
        if state == DONE:
            job.fraction, job.message = 1.0, "done"
        shutil.rmtree(job.folder, ignore_errors=True)


def new_log_path(folder: Path | None = None, keep: int = KEPT_LOGS) -> Path:
    """A fresh worker log in ``folder`` (default :data:`LOG_FOLDER`); only the newest ``keep`` - 1 older
    logs stay, so a crash can still be read afterwards but logs never pile up."""
    folder = folder or LOG_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    logs = sorted(folder.glob("worker-*.log"), key=lambda p: p.stat().st_mtime)
    for old in logs[:max(len(logs) - (keep - 1), 0)]:
        old.unlink(missing_ok=True)
    return folder / f"worker-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6}.log"


_shared: WorkerClient | None = None


def shared_client(**settings) -> WorkerClient:
    """The session's worker client (created on first use). ``settings`` (``python``, ``pythonpath``,
    ``expected_version``, as for :class:`WorkerClient`), when given and different from the current
    client's, replace it: the old worker is released first."""
    global _shared
    if _shared is not None and settings and not _same_settings(_shared, settings):
        release_shared_client()
    if _shared is None:
        _shared = WorkerClient(**settings)
    return _shared


def _same_settings(client: WorkerClient, settings: dict) -> bool:
    other = WorkerClient(**settings)
    return (client.python, client.pythonpath, client.expected_version, client.extra_env) == (
        other.python, other.pythonpath, other.expected_version, other.extra_env)


def current_client() -> WorkerClient | None:
    """The session's worker client if one was made (nothing is started)."""
    return _shared


def release_shared_client() -> None:
    """Stop the session's worker (add-on unregister, or the user's "Release" button)."""
    global _shared
    if _shared is not None:
        _shared.release()
        _shared = None


atexit.register(release_shared_client)  # Blender quits: stop the worker and remove the running job's folder
