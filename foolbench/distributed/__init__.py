"""Past one process: work spread over a Ray cluster (optional extra: ``pip install 'foolbench[ray]'``).

- :class:`RayEvaluator`: one population scored by model replicas on several workers (GPUs, machines);
  plugs into any search as ``evaluator=``.
- :class:`RayExecutor`: a suite's cells as Ray tasks (``run_suite(..., executor=RayExecutor())``,
  ``foolbench bench --ray``); the driver alone writes the output folder.
- :class:`RayMap`: independent runs (the fresh searches of a retraining round) as Ray tasks.
- :func:`connect`: join or start a cluster; :func:`require_ray`: one clear error when Ray is missing.

Nothing here imports Ray until it is used: without the extra, every other API works as before.
"""

from __future__ import annotations

from foolbench.distributed._executor import RayExecutor, RayMap
from foolbench.distributed._ray import EvaluatorClosedError, RayEvaluator, WorkerError, connect, require_ray

__all__ = ["EvaluatorClosedError", "RayEvaluator", "RayExecutor", "RayMap", "WorkerError", "connect", "require_ray"]
