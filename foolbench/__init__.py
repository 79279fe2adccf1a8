"""foolbench: find the images deep classifiers get confidently wrong.

The package is organised in layers, each a subpackage: :mod:`foolbench.models`
(classifier adapters and the model zoo), :mod:`foolbench.encodings` (genome to
image), :mod:`foolbench.search` (evolution, gradient ascent and perturbation
attacks), :mod:`foolbench.defenses`, :mod:`foolbench.bench` and
:mod:`foolbench.distributed` (Ray, optional).
"""

from __future__ import annotations

from foolbench import bench, data, defenses, distributed, encodings, errors, models, search
from foolbench._io import save_grid
from foolbench._malloc import tune_malloc

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "bench",
    "data",
    "defenses",
    "distributed",
    "encodings",
    "errors",
    "models",
    "save_grid",
    "search",
    "tune_malloc",
]
