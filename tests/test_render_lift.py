"""Lifting puts each pixel's feature on its triangle's vertices exactly, and every vertex gets one."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import trimesh

from sa3df.features.extractors import cameras, lift, render


def two_boxes():
    left = trimesh.creation.box(extents=(1, 1, 1))
    right = trimesh.creation.box(extents=(1, 2, 1))
    left.vertices += [-1.5, 0, 0]
    right.vertices += [1.5, 0, 0]
    vertices = np.vstack([left.vertices, right.vertices])
    faces = np.vstack([left.faces, right.faces + len(left.vertices)])
    which_box = np.repeat([0, 1], [len(left.faces), len(right.faces)])
    return vertices, faces, which_box


def render_rig(vertices, faces, count=12, resolution=48):
    renderer = render.Renderer(vertices, faces, resolution)
    return renderer, renderer.render(cameras.fibonacci_rig(vertices, count))


def test_piecewise_constant_features_lift_exactly():
    vertices, faces, which_box = two_boxes()
    _, views = render_rig(vertices, faces)
    pixel_box = np.where(views.mask, which_box[np.maximum(views.face_id, 0)], 0)
    one_hot = np.eye(2, dtype=np.float32)[pixel_box] * views.mask[..., None]
    lifted = lift.lift_pixel_features(views, faces, vertices, one_hot)
    expected = np.eye(2)[np.repeat([0, 1], 8)]
    np.testing.assert_allclose(lifted, expected, atol=2e-6)


def test_lifting_equals_the_barycentric_weighted_mean():
    ball = trimesh.creation.icosphere(subdivisions=2)
    _, views = render_rig(ball.vertices, ball.faces, count=6, resolution=40)
    rng = np.random.default_rng(0)
    per_face = rng.normal(size=(len(ball.faces), 4)).astype(np.float32)
    pixels = per_face[np.maximum(views.face_id, 0)] * views.mask[..., None]
    lifted = lift.lift_pixel_features(views, ball.faces, ball.vertices, pixels)

    # Reference: plain numpy scatter over every foreground pixel of every view.
    sums = np.zeros((len(ball.vertices), 4))
    weights = np.zeros(len(ball.vertices))
    hit = views.mask
    corners = ball.faces[views.face_id[hit]]
    bary = views.barycentric[hit]
    for k in range(3):
        np.add.at(sums, corners[:, k], bary[:, k, None] * pixels[hit])
        np.add.at(weights, corners[:, k], bary[:, k])
    assert (weights > 0).all()  # six views of a sphere see every vertex
    np.testing.assert_allclose(lifted, sums / weights[:, None], rtol=1e-5, atol=1e-6)


def test_hit_positions_lift_to_vertex_positions():
    ball = trimesh.creation.icosphere(subdivisions=3)
    renderer, views = render_rig(ball.vertices, ball.faces, count=10, resolution=96)
    lifted = lift.lift_pixel_features(views, ball.faces, ball.vertices, renderer.hit_points(views).astype(np.float32))
    error = np.linalg.norm(lifted - ball.vertices, axis=1)
    edge = ball.edges_unique_length.mean()
    # A vertex gets the mean of nearby surface points, centred on it up to curvature and sampling.
    assert error.max() < 0.1 * edge and error.mean() < 0.06 * edge


def test_unseen_vertices_take_the_nearest_seen_feature():
    outer = trimesh.creation.icosphere(subdivisions=2)
    inner = trimesh.creation.icosphere(subdivisions=1, radius=0.3)
    vertices = np.vstack([outer.vertices, inner.vertices])
    faces = np.vstack([outer.faces, inner.faces + len(outer.vertices)])
    renderer, views = render_rig(vertices, faces, count=6, resolution=32)
    features = renderer.hit_points(views).astype(np.float32)
    accumulator = lift.VertexAccumulator(len(vertices), 3)
    for b in range(len(views)):
        rows, cols, corners, bary = lift.view_pixels(views, faces, b)
        accumulator.add(torch.as_tensor(corners), torch.as_tensor(bary), torch.as_tensor(features[b, rows, cols]))
    seen = accumulator.seen
    assert seen[: len(outer.vertices)].all() and not seen[len(outer.vertices):].any()
    lifted = accumulator.result(vertices)
    hidden = np.arange(len(outer.vertices), len(vertices))
    distances = np.linalg.norm(vertices[hidden, None] - vertices[None, seen], axis=2)
    np.testing.assert_array_equal(lifted[hidden], lifted[seen][distances.argmin(axis=1)])


def test_repeated_vertices_accumulate_in_double_weights():
    accumulator = lift.VertexAccumulator(3, 1)
    corners = torch.tensor([[0, 1, 2]] * 5000)
    bary = torch.tensor([[1.0, 0.0, 0.0]] * 5000)
    features = torch.arange(5000, dtype=torch.float32)[:, None]
    accumulator.add(corners, bary, features)
    assert accumulator.weights.dtype == torch.float64 and accumulator.weights[0] == 5000  # fp16 stops at 2048
    assert accumulator.result(np.eye(3))[0, 0] == pytest.approx(2499.5)


def test_nothing_seen_is_an_error():
    accumulator = lift.VertexAccumulator(4, 2)
    with pytest.raises(ValueError, match="no view saw the mesh"):
        accumulator.result(np.zeros((4, 3)))


def test_grid_sampling_matches_align_corners_false_upsampling():
    torch.manual_seed(0)
    grid = torch.randn(5, 3, 4)
    res = 12
    upsampled = F.interpolate(grid[None], size=(res, res), mode="bilinear", align_corners=False)[0]
    rows, cols = np.meshgrid(np.arange(res), np.arange(res), indexing="ij")
    sampled = lift.sample_grid(grid, rows.ravel(), cols.ravel(), res)
    expected = F.normalize(upsampled.reshape(5, -1).T, dim=1)
    torch.testing.assert_close(sampled, expected, atol=1e-5, rtol=1e-5)


def test_large_meshes_lift_without_quadratic_memory():
    ball = trimesh.creation.icosphere(subdivisions=6)  # 40,962 vertices: past Diff3F's 35k cdist limit
    renderer = render.Renderer(ball.vertices, ball.faces, 32)
    views = renderer.render(cameras.fibonacci_rig(ball.vertices, 2))
    grids = [[torch.randn(6, 4, 4)] for _ in range(len(views))]
    accumulator = lift.VertexAccumulator(len(ball.vertices), 6)
    lift.lift_grids(accumulator, views, ball.faces, grids)
    assert accumulator.seen.mean() < 0.2  # 2 small views see few vertices; the rest are filled
    lifted = accumulator.result(ball.vertices)
    assert lifted.shape == (len(ball.vertices), 6) and np.isfinite(lifted).all()
    assert (np.linalg.norm(lifted, axis=1) > 0.5).all()


def test_linear_form_lifting_equals_sampling_every_pixel():
    vertices, faces, _ = two_boxes()
    _, views = render_rig(vertices, faces, count=3, resolution=40)
    torch.manual_seed(1)
    grids = [[torch.randn(7, 5, 6), torch.randn(3, 3, 3)] for _ in range(len(views))]
    fast = lift.VertexAccumulator(len(vertices), 10)
    lift.lift_grids(fast, views, faces, grids, weights=[0.5, 2.0])
    reference = lift.VertexAccumulator(len(vertices), 10)
    for b in range(len(views)):
        rows, cols, corners, bary = lift.view_pixels(views, faces, b)
        features = torch.cat([0.5 * lift.sample_grid(grids[b][0], rows, cols, 40),
                              2.0 * lift.sample_grid(grids[b][1], rows, cols, 40)], dim=1)
        reference.add(torch.as_tensor(corners), torch.as_tensor(bary), features)
    torch.testing.assert_close(fast.weights, reference.weights)
    torch.testing.assert_close(fast.sums, reference.sums, atol=1e-4, rtol=1e-5)
