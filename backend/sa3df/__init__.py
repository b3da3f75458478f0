"""sa3df: surface-aware distilled 3D semantic features.

Arrays in, arrays out; never imports Blender. Subpackages, one capability per module:
``core`` (mesh, geodesics, orient, device, progress, files), ``features`` (extractors, network, train,
checkpoint, settings, pipeline), ``apps`` (match, segment, transfer, colors, evaluate, report), ``motion``
(rig, rotations, fit, terms) and ``service`` (protocol, client, the worker process and its jobs); ``cli``,
``demo`` and ``examples`` at the top.
"""

__version__ = "0.1.0"
