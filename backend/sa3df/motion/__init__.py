"""Rigs and motion: the numpy rig (``rig``), rotations, the pose/motion fitter (``fit``) and its terms.
Nothing here is imported eagerly, so ``sa3df.motion.rig`` stays cheap."""
