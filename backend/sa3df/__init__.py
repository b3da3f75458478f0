"""sa3df: surface-aware distilled 3D semantic features.

Arrays in, arrays out; never imports Blender. One module per capability:
``mesh`` (load/clean/normalise), ``geodesics`` (heat distances, anchor pools),
``extractors`` (base features), ``network``/``train`` (surface-aware embedding),
``match``, ``segment``, ``transfer``, ``evaluate``, ``rig``/``motion``.
"""

__version__ = "0.1.0"
