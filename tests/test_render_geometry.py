"""The renderer sees what analytic geometry says: sphere and box depths, normals, hit points, rigs."""

import numpy as np
import pytest
import trimesh

from sa3df.features.extractors import cameras, render
from sa3df.features.extractors.raycast import available_engines


@pytest.fixture(scope="module")
def sphere():
    return trimesh.creation.icosphere(subdivisions=4)  # radius 1, chord sag < 0.002


def front_camera(distance: float, fov: float = 40.0):
    return cameras.look_at([0.0, 0.0, distance], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0], fov)


def test_sphere_hit_points_depth_and_normals(sphere):
    renderer = render.Renderer(sphere.vertices, sphere.faces, resolution=96)
    rig = cameras.fibonacci_rig(sphere.vertices, 5)
    views = renderer.render(rig)
    points = renderer.hit_points(views)
    hit = views.mask
    # Barycentrics reconstruct points on the sphere, on each pixel's ray, at the reported depth.
    assert np.abs(np.linalg.norm(points[hit], axis=1) - 1).max() < 3e-3
    for b, camera in enumerate(rig):
        rel = points[b][hit[b]] - camera.position
        np.testing.assert_allclose(rel @ camera.forward, views.depth[b][hit[b]], atol=2e-4)
        off_ray = np.linalg.norm(np.cross(rel, views.view_dir[b][hit[b]]), axis=1)
        assert off_ray.max() < 2e-4
    # Interpolated normals are radial.
    radial = points[hit] / np.linalg.norm(points[hit], axis=1, keepdims=True)
    assert (views.normal[hit] * radial).sum(-1).min() > 0.995
    assert (views.depth[~hit] == 0).all() and (views.face_id[~hit] == -1).all()


def test_sphere_silhouette_and_centre_depth(sphere):
    distance, fov, res = 4.0, 40.0, 128
    views = render.Renderer(sphere.vertices, sphere.faces, res).render([front_camera(distance, fov)])
    # Disc of angular radius asin(1/d) in an image of half-width tan(fov/2).
    disc = np.tan(np.arcsin(1 / distance)) / np.tan(np.radians(fov / 2))
    assert views.mask.mean() == pytest.approx(np.pi * disc**2 / 4, rel=0.02)
    centre = views.depth[0, res // 2 - 1: res // 2 + 1, res // 2 - 1: res // 2 + 1]
    np.testing.assert_allclose(centre, distance - 1, atol=3e-3)


def test_box_front_face_is_flat_at_known_depth():
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    views = render.Renderer(box.vertices, box.faces, 64).render([front_camera(3.0, 30.0)])
    hit = views.mask[0]
    assert hit.mean() > 0.3
    np.testing.assert_allclose(views.depth[0][hit], 2.5, atol=1e-5)
    np.testing.assert_allclose(views.normal[0][hit], np.tile([0, 0, 1.0], (hit.sum(), 1)), atol=1e-5)
    assert (box.face_normals[views.face_id[0][hit]][:, 2] > 0.999).all()


@pytest.mark.parametrize("resolution", [16, 64])  # 64²: rays are binned into screen tiles
def test_numpy_engine_agrees_with_embree(resolution):
    if "embree" not in available_engines():
        pytest.skip("embreex not installed")
    ball = trimesh.creation.icosphere(subdivisions=3)
    ball.vertices[:, 0] *= 1.7
    rig = cameras.fibonacci_rig(ball.vertices, 2) + [front_camera(0.3, 90.0)]  # the last one is inside
    fast = render.Renderer(ball.vertices, ball.faces, resolution, engine="embree").render(rig)
    slow = render.Renderer(ball.vertices, ball.faces, resolution, engine="numpy").render(rig)
    same = fast.face_id == slow.face_id
    assert same.mean() > 0.995 and slow.mask[2].all()
    np.testing.assert_allclose(fast.barycentric[same], slow.barycentric[same], atol=1e-4)
    np.testing.assert_allclose(fast.depth[same], slow.depth[same], atol=1e-4)


def test_missing_embree_falls_back_with_a_warning(monkeypatch):
    from sa3df.features.extractors import raycast

    monkeypatch.setattr(raycast, "available_engines", lambda: ["numpy"])
    box = trimesh.creation.box()
    with pytest.warns(RuntimeWarning, match="embreex is not installed"):
        caster = raycast.make_ray_caster(box.vertices, box.faces)
    assert caster.name == "numpy"
    with pytest.raises(ValueError, match="'embree' is not available"):
        raycast.make_ray_caster(box.vertices, box.faces, "embree")


def test_grid_rig_is_diff3f_and_fibonacci_is_spread(sphere):
    grid = cameras.grid_rig(sphere.vertices, 100)
    _, diagonal = cameras.bounding_box(sphere.vertices)
    assert len(grid) == 100 and all(c.fov_deg == 90 for c in grid)
    np.testing.assert_allclose([np.linalg.norm(c.position) for c in grid], 0.65 * diagonal, rtol=1e-9)
    positions = np.round(np.stack([c.position for c in grid]), 6)
    assert len(np.unique(positions, axis=0)) < 100  # Diff3F's full-circle elevation repeats views
    assert len(cameras.grid_rig(sphere.vertices, 50)) == 49  # steps² views, not the count asked for

    directions = cameras.fibonacci_directions(60)
    cosines = directions @ directions.T - 2 * np.eye(60)
    spacing = np.sqrt(4 * np.pi / 60)  # typical angular spacing of 60 evenly spread points
    assert np.arccos(cosines.max()) > 0.6 * spacing
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0)
    assert abs(directions.mean(axis=0)).max() < 0.02


def test_fibonacci_views_frame_the_whole_mesh_and_keep_up_axis():
    chair = trimesh.creation.box(extents=(0.5, 2.0, 0.3))
    chair.vertices += [5.0, -1.0, 2.0]  # off-centre on purpose
    for up_axis, axis in (("y", 1), ("z", 2)):
        rig = cameras.fibonacci_rig(chair.vertices, 10, up_axis=up_axis)
        assert all(c.up[axis] >= 0 for c in rig)
        views = render.Renderer(chair.vertices, chair.faces, 48).render(rig)
        assert views.mask.any(axis=(1, 2)).all()
        border = np.concatenate([views.mask[:, 0], views.mask[:, -1], views.mask[:, :, 0], views.mask[:, :, -1]], 1)
        assert not border.any()


def test_shading_depth_and_normal_maps(sphere):
    res = 64
    views = render.Renderer(sphere.vertices, sphere.faces, res).render([front_camera(4.0)])
    image = render.shade(views)
    c = res // 2
    assert image.shape == (1, res, res, 3) and (image[0, 0, 0] == 1.0).all()  # white background
    # Facing the head light: albedo · (ambient + diffuse) + specular.
    np.testing.assert_allclose(image[0, c, c], [0.81, 0.81, 0.89], atol=5e-3)
    assert image[0, c, c + 14, 0] < image[0, c, c, 0]  # darker towards the rim

    depth = render.depth_image(views)
    assert depth[0, c, c] == pytest.approx(1.0, abs=5e-3) and depth[0, 0, 0] == 0
    assert depth[0][views.mask[0]].min() == pytest.approx(0.2)

    normals = render.normal_image(views, "bae")
    np.testing.assert_allclose(normals[0, c, c], [0.5, 0.5, 1.0], atol=0.02)
    assert normals[0, c, c + 14, 0] < 0.4  # a surface facing image-right is red-dark (red = left)
    assert normals[0, c - 14, c, 1] > 0.6  # facing up is green-bright
    diff3f = render.normal_image(views, "diff3f")
    assert diff3f[0][views.mask[0]].min() == 0 and diff3f[0][views.mask[0]].max() == 1
    with pytest.raises(ValueError, match="normal-map convention"):
        render.normal_image(views, "opengl")
