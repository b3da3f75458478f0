"""Damaged or foreign files on disk never break later runs or slip into results: caches are checked on
read and recomputed; writers never share a temporary file; cache folders stay under their limit."""

from __future__ import annotations

import multiprocessing
import os
import time

import numpy as np
import pytest
import trimesh

from sa3df.core import geodesics, storage
from sa3df.core.mesh import from_arrays
from sa3df.features.extractors import create_extractor
from sa3df.features.pipeline import FeatureCache, compute_surface_features
from sa3df.features.settings import FeatureSettings
from sa3df.service.context import WorkerState


@pytest.fixture
def ball():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    return from_arrays(sphere.vertices, sphere.faces, name="ball")


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_or_foreign_anchor_cache_is_recomputed(tmp_path, ball):
    first = geodesics.AnchorCache(tmp_path).get(ball, count=8)
    (path,) = tmp_path.glob("anchors_*.npz")
    key = path.stem[len("anchors_"):]
    rng = np.random.default_rng(0)
    damages = {
        "truncated": lambda: _truncate(path),
        "not an archive": lambda: path.write_bytes(b"garbage"),
        "wrong shape": lambda: np.savez(path, key=key, anchors=np.arange(3), distances=rng.random((5, 3)),
                                        scale=1.0),
        "random values": lambda: np.savez(path, key=key, anchors=first.anchors,
                                          distances=rng.random(first.distances.shape).astype(np.float32), scale=1.0),
        "NaN": lambda: np.savez(path, key=key, anchors=first.anchors,
                                distances=np.full_like(first.distances, np.nan), scale=first.scale),
    }
    for what, damage in damages.items():
        damage()
        pool = geodesics.AnchorCache(tmp_path).get(ball, count=8)  # a fresh process, as a later run
        np.testing.assert_array_equal(pool.anchors, first.anchors, err_msg=what)
        np.testing.assert_allclose(pool.distances, first.distances, err_msg=what)
        assert storage.read_npz(path, key=key) is not None, f"{what}: the entry was replaced with a good one"


def test_a_damaged_base_feature_cache_is_recomputed(tmp_path, ball):
    extractor = create_extractor("geometric", eigen_count=16)
    first = FeatureCache(tmp_path).get(ball, extractor)
    (path,) = tmp_path.glob("*.npz")
    for damage in (lambda: _truncate(path),
                   lambda: np.savez(path, key=FeatureCache.key(ball, extractor), features=first[:5]),
                   lambda: np.savez(path, key=FeatureCache.key(ball, extractor), features=first * np.nan)):
        damage()
        np.testing.assert_array_equal(FeatureCache(tmp_path).get(ball, extractor), first)


def test_a_damaged_surface_feature_cache_is_recomputed_by_the_worker(tmp_path, ball):
    settings = FeatureSettings.from_params({"extractor": "geometric", "effort": "off", "cache_dir": str(tmp_path)})

    def worker_features():  # a fresh worker each time: only the disk cache is shared
        return compute_surface_features([ball], settings, caches=WorkerState().caches(settings.cache_dir))

    first = worker_features()
    (path,) = (tmp_path / "surface_features").glob("*.npz")
    _truncate(path)
    again = worker_features()
    assert again.source == "computed"
    np.testing.assert_array_equal(again.embeddings[0], first.embeddings[0])
    assert worker_features().source == "disk"


def _write_many(path, seed, count, failures):
    for i in range(count):
        try:
            storage.write_npz(path, {"writer": np.full(1000, seed), "i": i})
        except OSError:
            failures.put(seed)


def test_writers_racing_on_one_entry_never_fail_or_leave_half_files(tmp_path):
    path = tmp_path / "entry.npz"
    context = multiprocessing.get_context("fork")
    failures = context.Queue()
    writers = [context.Process(target=_write_many, args=(path, seed, 20, failures)) for seed in range(4)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=120)
    assert failures.empty() and all(p.exitcode == 0 for p in writers)
    data = storage.read_npz(path)
    assert data is not None and len(np.unique(data["writer"])) == 1, "the last complete write wins"
    assert [p.name for p in tmp_path.iterdir()] == ["entry.npz"], "no temporary is left behind"


def test_a_failed_write_leaves_the_old_entry_and_no_temporary(tmp_path):
    path = storage.write_npz(tmp_path / "entry.npz", {"x": np.arange(3)})

    def crash(tmp):
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        storage.atomic_write(path, crash)
    np.testing.assert_array_equal(storage.read_npz(path)["x"], np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["entry.npz"]


def test_cache_folders_stay_under_their_limit_least_recently_used_first(tmp_path, monkeypatch):
    now = time.time()
    for age, name in enumerate(["newest", "middle", "oldest"]):
        path = storage.write_npz(tmp_path / f"{name}.npz", {"x": np.zeros(250_000, np.uint8)})
        os.utime(path, (now - 100 * age, now - 100 * age))
    os.utime(tmp_path / "oldest.npz", (now - 500, now - 500))
    assert storage.read_npz(tmp_path / "oldest.npz") is not None  # reading makes it recently used
    monkeypatch.setenv(storage.LIMIT_VARIABLE, "0.5")  # room for two of the three ~0.24 MB entries
    assert storage.prune(tmp_path) == 1
    assert sorted(p.stem for p in tmp_path.iterdir()) == ["newest", "oldest"]
    monkeypatch.setenv(storage.LIMIT_VARIABLE, "lots")
    with pytest.raises(ValueError, match="SA3DF_CACHE_LIMIT_MB must be a number of megabytes"):
        storage.prune(tmp_path)


def test_an_anchor_cache_under_a_small_limit_keeps_the_entry_it_just_wrote(tmp_path, ball, monkeypatch):
    monkeypatch.setenv(storage.LIMIT_VARIABLE, "0.001")
    cache = geodesics.AnchorCache(tmp_path)
    cache.get(ball, count=4, seed=0)
    cache.get(ball, count=4, seed=1)
    assert [p.name.endswith("_s1.npz") for p in tmp_path.iterdir()] == [True]


def test_the_cache_limit_setting_bounds_every_folder_of_a_worker_and_the_cli(tmp_path, ball):
    def run(limit_mb, seed, caches=None):
        settings = FeatureSettings(extractor="geometric", steps=2, seed=seed, cache_dir=str(tmp_path),
                                   cache_limit_mb=limit_mb, training={"anchor_pool_size": 8, "cpu_threads": 1})
        return compute_surface_features([ball], settings, caches=caches)

    state = WorkerState()
    for seed in range(3):  # other seeds: other anchor pools and results, the same base features
        run(None, seed, state.caches(str(tmp_path)))
    assert len(list((tmp_path / "anchors").glob("*.npz"))) == 3
    run(0.001, 3, state.caches(str(tmp_path), 0.001))  # a limit smaller than one entry: only the newest stays
    assert [len(list((tmp_path / folder).glob("*.npz"))) for folder in ("anchors", "surface_features")] == [1, 1]
    run(0.001, 4)  # the one-call path (the CLI's) takes it from the settings too
    assert len(list((tmp_path / "anchors").glob("*.npz"))) == 1
    with pytest.raises(ValueError, match="cache limit must be 0"):
        FeatureSettings(cache_limit_mb=-1)


def test_a_damaged_feature_archive_is_named_not_used(tmp_path, ball):
    from sa3df.core import files

    item = files.MeshFeatures(ball, np.ones((ball.n_vertices, 4), np.float32),
                              np.ones((ball.n_vertices, 2), np.float32), "geometric")
    path = files.save_features(tmp_path / "ball.npz", item)
    assert files.load_features(path).embedding.shape == (ball.n_vertices, 2)
    _truncate(path)
    with pytest.raises(ValueError, match="is not an sa3df feature archive, or it is damaged"):
        files.load_features(path)
    item.embedding[3] = np.nan
    files.save_features(path, item)
    with pytest.raises(ValueError, match="its embedding features are not one finite row per vertex"):
        files.load_features(path)
