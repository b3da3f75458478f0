"""``sa3df batch``: features for whole data sets on Ray (the optional ``sa3df[ray]`` extra).

A folder or manifest of meshes in (:mod:`sa3df.batch.plan`), one Ray task per mesh or training group
(:mod:`sa3df.batch.tasks`), outputs written atomically by the driver as results arrive, finished
outputs skipped on a rerun (:mod:`sa3df.batch.run`). :mod:`sa3df.batch.dataset` reads the outputs back
as a training set for ``sa3df train``.
"""

from sa3df.batch.plan import BatchGroup, BatchItem, plan_batch, plan_groups, read_inputs  # noqa: F401
from sa3df.batch.run import BatchSummary, RaySettings, require_ray, run_batch  # noqa: F401
