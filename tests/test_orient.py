"""Meshes facing different ways are turned to face alike before extrinsic features are compared."""

import numpy as np

from sa3df import examples
from sa3df.core import orient
from sa3df.features.extractors import create_extractor
from sa3df.apps.match import nearest_neighbors


def test_turn_about_up_is_recovered_and_left_stays_left():
    walk = examples.humanoid("walk").mesh
    turned = orient.rotation_about(2, np.radians(90))
    moving = walk.vertices @ turned.T
    found = orient.yaw_to_match(walk.vertices, moving, up="z")
    np.testing.assert_allclose(found @ turned, np.eye(3), atol=1e-9)  # exactly undoes the quarter turn
    assert np.linalg.det(found) > 0.999, "a rotation, never a mirror"


def test_facing_alike_fixes_left_right_matches_between_turned_characters():
    from sa3df.core.mesh import from_arrays

    rest, walk = examples.humanoid("rest").mesh, examples.humanoid("walk").mesh
    turned = from_arrays(walk.vertices @ orient.rotation_about(2, np.radians(90)).T, walk.faces, name="turned")
    extractor = create_extractor("geometric")

    def wrong_side(meshes):
        a, b = (extractor.extract(m) for m in meshes)
        predicted, _ = nearest_neighbors(b, a)
        x = rest.vertices[:, 0]
        side = np.abs(x) > 0.1
        return float(np.mean(np.sign(x[predicted][side]) != np.sign(x[side])))

    before = wrong_side([rest, turned])
    after = wrong_side(orient.face_like_first([rest, turned], "z"))
    assert before > 0.2 and after < 0.05, (before, after)
