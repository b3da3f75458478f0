"""Per-vertex features: base extractors, the surface-aware network, its training and checkpoints, and the
pipeline that turns meshes + settings into features."""
