"""Rigs and motion: the numpy rig (``rig``, all the Blender add-on needs), its torch skinning (``skinning``),
rotations, the pose/motion fitter (``fit``) and its terms. Nothing here is imported eagerly, so
``sa3df.motion.rig`` stays cheap and torch-free."""
