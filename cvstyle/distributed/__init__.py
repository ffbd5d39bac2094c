"""Stylize many files on a Ray cluster (``cvstyle apply --ray``), or a Ray Dataset of images.

The driver lists the inputs (paths, folders, globs, or URIs a pyarrow filesystem
understands), names the outputs as ``apply`` does (:func:`cvstyle.batch.plan_outputs`),
leaves out those already written when asked, and streams one row per output through a
Ray Data actor pool. Each actor builds its :class:`~cvstyle.stylizer.Stylizer` objects
once, then reads, stylizes and writes its rows with the same image I/O as ``apply``
(:mod:`cvstyle.imageio`: EXIF, alpha, 16-bit, pixel cap, atomic writes) and returns one
result row per output: written, or the one-line error ``apply`` would report.

Exactness under failures: Ray Data restarts a dead actor and retries its rows; a retried
row writes the same file again, atomically, so every output exists once and whole; the
driver counts each row once, by its index.
"""

from .job import IMAGES_PER_BATCH, ROWS_PER_BLOCK, RayReport, actor_shape, apply_on_ray, plan_rows, remove_temporaries, stylize_dataset
from .settings import INSTALL_COMMAND, ClusterSettings, ModelSettings, require_ray
from .sources import expand_sources, is_uri, read_uri

__all__ = [
    "IMAGES_PER_BATCH", "INSTALL_COMMAND", "ROWS_PER_BLOCK", "ClusterSettings", "ModelSettings", "RayReport", "actor_shape",
    "apply_on_ray", "expand_sources", "is_uri", "plan_rows", "read_uri", "remove_temporaries",
    "require_ray", "stylize_dataset",
]
