"""The worker process and its client, without Blender: jobs, errors, cancel, crash, release."""

from __future__ import annotations

import os
import signal
import numpy as np
import pytest

from sa3df.service import client as worker_client
from sa3df.service import jobs
from sa3df.service.context import JobOutput
from sa3df.service.protocol import meshes_to_inputs


@pytest.fixture
def client():
    c = worker_client.WorkerClient()
    yield c
    c.release()


def _square_pair():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=float)
    return meshes_to_inputs([(vertices, np.array([[0, 1, 2], [0, 2, 3]]))])


def test_a_job_runs_in_another_process_and_reports_its_environment(client):
    job = client.wait(client.submit("environment", {}, {"device": "cpu"}))
    assert job.state == worker_client.DONE, job.error
    assert job.info["device"] == "cpu" and "geometric" in job.info["extractors"]
    assert {"compute_features", "correspondence", "segment", "transfer_weights"} <= set(job.info["jobs"])
    assert client.pid is not None and client.pid != os.getpid()


def test_backend_errors_come_back_as_messages_and_the_worker_lives_on(client):
    job = client.wait(client.submit("no_such_job", {}, {}))
    assert job.state == worker_client.FAILED and "Unknown job 'no_such_job'" in job.error
    bad = {"mesh0_vertices": np.zeros((3, 3)), "mesh0_faces": np.zeros((0, 3), dtype=np.int64)}
    job = client.wait(client.submit("compute_features", bad, {"mesh_names": ["Chair"]}))
    assert job.state == worker_client.FAILED and "Chair" in job.error and "no faces" in job.error
    assert client.wait(client.submit("environment", {}, {})).state == worker_client.DONE


def test_one_job_at_a_time(client):
    first = client.submit("environment", {}, {})
    with pytest.raises(worker_client.WorkerError, match="still running"):
        client.submit("environment", {}, {})
    client.wait(first)


def test_a_killed_worker_fails_the_job_with_a_clear_message_and_restarts(client):
    job = client.submit("environment", {}, {})
    os.kill(client.process.pid, signal.SIGKILL)
    client.wait(job)
    assert job.state == worker_client.FAILED
    assert "stopped unexpectedly" in job.error and "-9" in job.error
    assert client.wait(client.submit("environment", {}, {})).state == worker_client.DONE


def test_cancel_stops_a_job_between_steps_and_returns_no_result(client):
    job = client.submit("compute_features", _square_pair(), {"features": {"effort": "off"}})
    client.cancel(job)
    client.wait(job)
    assert job.state == worker_client.CANCELLED and job.arrays == {}
    assert not job.folder.exists()  # temporary arrays are removed


def test_release_stops_the_process(client):
    client.wait(client.submit("environment", {}, {}))
    process = client.process
    client.release()
    assert process.poll() is not None and not client.alive


def test_job_registry_takes_new_jobs_with_one_call():
    def double(ctx):
        return JobOutput({"twice": ctx.inputs["x"] * 2}, {"n": len(ctx.inputs["x"])})

    jobs.register("test_double", double)
    out = jobs.run_job("test_double", {"x": np.arange(3)}, {})
    np.testing.assert_array_equal(out.arrays["twice"], [0, 2, 4])
    assert out.info == {"n": 3} and "test_double" in jobs.job_names()


def test_a_worker_whose_front_end_goes_away_stops_its_job_and_exits(client):
    job = client.submit("compute_features", _square_pair(), {"features": {"effort": "off"}})
    process = client.process
    process.stdin.close()  # what Blender quitting (or crashing) looks like to the worker
    assert process.wait(timeout=120) == 0


def test_a_cancel_the_worker_does_not_answer_in_time_kills_it(client, monkeypatch):
    job = client.submit("environment", {}, {})
    client.wait(job)
    stuck = worker_client.Job(job_id="stuck", name="stuck", folder=job.folder)  # a job the worker never heard of
    client.active = stuck
    monkeypatch.setattr(worker_client, "CANCEL_GRACE_SECONDS", 0.0)
    client.cancel(stuck)
    client.wait(stuck)
    assert stuck.state == worker_client.CANCELLED and not client.alive
