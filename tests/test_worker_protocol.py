"""The worker answers every request line, even malformed ones, and keeps serving; the client leaves no
job folders behind and keeps only the newest few worker logs."""

from __future__ import annotations

import io
import json
import os
import threading
import time

from test_addon_client import worker_client

from sa3df.service import jobs
from sa3df.service.worker import ProtocolWriter, Worker


def serve(lines: list[str], last_job: str) -> list[dict]:
    """Run a worker on ``lines``; input ends once job ``last_job`` has finished (closing the input
    earlier would cancel it). Returns the events other than progress."""
    out = io.StringIO()

    def events() -> list[dict]:
        return [json.loads(line) for line in out.getvalue().splitlines() if line]

    def requests():
        yield from (line + "\n" for line in lines)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(
                e.get("job_id") == last_job and e["event"] in ("done", "error") for e in events()):
            time.sleep(0.01)

    server = threading.Thread(target=Worker(requests(), ProtocolWriter(out)).serve, daemon=True)
    server.start()
    server.join(timeout=180)
    assert not server.is_alive(), f"the worker stopped serving; events so far: {events()}"
    return [e for e in events() if e["event"] != "progress"]


def test_a_request_that_is_not_an_object_gets_an_error_and_the_worker_keeps_serving(tmp_path):
    events = serve(["[1]", '"text"', "{nope", '{"op": "dance"}', '{"op": "ping"}',
                    json.dumps({"op": "run", "job_id": "7", "name": "environment", "output": str(tmp_path / "o.npz"),
                                "params": {"device": "cpu"}})], last_job="7")
    events = [e for e in events if e["event"] != "ready"]  # sent while the reader already runs
    assert [e["event"] for e in events] == ["error", "error", "error", "error", "pong", "done"], events
    assert "must be a JSON object" in events[0]["message"] and "unknown op 'dance'" in events[3]["message"]
    assert (tmp_path / "o.npz").exists()


def test_a_run_without_output_fails_before_the_work(monkeypatch):
    ran = []
    monkeypatch.setattr(jobs, "run_job", lambda *args, **kwargs: ran.append(args))
    events = serve([json.dumps({"op": "run", "job_id": "8", "name": "environment", "params": {}})], last_job="8")
    error = events[-1]
    assert error["event"] == "error" and error["job_id"] == "8" and "lacks 'output'" in error["message"]
    assert ran == [], "the job never ran"


def test_job_folders_are_removed_and_only_the_newest_logs_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(worker_client, "LOG_FOLDER", tmp_path / "logs")
    (tmp_path / "logs").mkdir()
    for i in range(7):  # logs of earlier sessions
        old = tmp_path / "logs" / f"worker-old{i}.log"
        old.write_text("old")
        os.utime(old, (time.time() - 1000 + i, time.time() - 1000 + i))
    client = worker_client.WorkerClient()
    try:
        done = client.wait(client.submit("environment", {}, {"device": "cpu"}))
        assert done.state == worker_client.DONE and not done.folder.exists()
        running = client.submit("environment", {}, {"device": "cpu"})
        assert running.folder.exists()
    finally:
        client.release()  # what Blender's exit (atexit) or unregister does
    assert running.finished and not running.folder.exists()
    logs = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert len(logs) == worker_client.KEPT_LOGS and client.log_path.name in logs
    assert "worker-old0.log" not in logs and "worker-old6.log" in logs
