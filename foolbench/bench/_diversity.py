"""Diversity across independent runs of a search: pairwise distances of the runs' elites (private).

For each target class, the elites that ``N`` independent runs found are compared pairwise in two
spaces: pixels (the L2 distance of the images scaled to [0, 1], divided by the square root of the
number of pixel values, i.e. a root-mean-square difference per pixel) and the model's penultimate
features (the input of the last ``nn.Linear`` its network runs, L2 divided by the square root of the
feature count). The same measure over real images of that class (the suite's held-out images
labelled with it) is the reference a reader compares against.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import torch
from torch import nn

__all__ = ["diversity", "mean_pairwise", "penultimate"]

REAL_LIMIT = 100  # real images per class compared (the first ones of the held-out split)


def mean_pairwise(x: torch.Tensor) -> float | None:
    """Mean L2 distance over all pairs of rows, divided by sqrt(row length); None for fewer than 2 rows.

    Shape:
        - x: (N, ...) any trailing shape (flattened).

    Examples:
        >>> mean_pairwise(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
        1.0
        >>> mean_pairwise(torch.zeros(1, 4)) is None
        True
    """
    if x.shape[0] < 2:
        return None
    flat = x.reshape(x.shape[0], -1).double()
    d = torch.cdist(flat, flat)
    n = flat.shape[0]
    return float(d.sum() / (n * (n - 1)) / math.sqrt(flat.shape[1]))


def _network(classifier: Any) -> nn.Module | None:
    network = getattr(classifier, "network", None)
    if not callable(network):
        return None
    net = network()
    from foolbench.defenses import Ensemble

    if isinstance(net, Ensemble):  # several networks, no one penultimate layer (the last Linear: a member's)
        return None
    return net if isinstance(net, nn.Module) else None


def _last_linear(classifier: Any, net: nn.Module, probe: torch.Tensor) -> tuple[nn.Linear, int] | None:
    """The last ``nn.Linear`` that one forward pass of ``probe`` calls, and how many times the pass calls it.

    The order the layers run in, not the order a module registers them (a head registered before its
    body is still the last layer run).
    """
    calls: list[nn.Linear] = []

    def hook(module: nn.Module, _inputs: tuple[torch.Tensor, ...]) -> None:
        if isinstance(module, nn.Linear):
            calls.append(module)

    handles = [m.register_forward_pre_hook(hook) for m in net.modules() if isinstance(m, nn.Linear)]
    try:
        classifier.log_probs(probe.to(classifier.device))
    finally:
        for handle in handles:
            handle.remove()
    if not calls:
        return None
    return calls[-1], sum(1 for m in calls if m is calls[-1])


def penultimate(classifier: Any, images: torch.Tensor) -> torch.Tensor | None:
    """The input of the last ``nn.Linear`` ``classifier.network()`` runs, for ``images`` (None: none, or an ensemble).

    Shape:
        - images: (B, C, H, W) raw images inside the classifier's bounds.
        - output: (B, D) float64 on the CPU.
    """
    net = _network(classifier)
    found = None if net is None else _last_linear(classifier, net, images[:1])
    if found is None:
        return None
    layer, per_pass = found
    captured: list[torch.Tensor] = []
    calls = 0

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        nonlocal calls
        calls += 1
        if calls % per_pass == 0:  # a layer a pass runs more than once: its last call's input
            captured.append(inputs[0].detach().flatten(1).double().cpu())

    handle = layer.register_forward_pre_hook(hook)
    try:
        classifier.log_probs(images.to(classifier.device))
    finally:
        handle.remove()
    return torch.cat(captured) if captured else None


def _unit(x: torch.Tensor, bounds: Any) -> torch.Tensor:
    lo, hi = float(bounds[0]), float(bounds[1])
    return (x.double() - lo) / (hi - lo)


def diversity(
    classifier: Any,
    runs: list[torch.Tensor],
    classes: list[int],
    confidence: list[list[float]],
    real: tuple[torch.Tensor, torch.Tensor] | None,
) -> dict[str, Any]:
    """Per class: mean pairwise distance of the runs' elites (pixels, features) and of real images of the class.

    Args:
        classifier: the attacked classifier (its penultimate features are compared).
        runs: one (M, C, H, W) tensor of elites per run (row m: class ``classes[m]``).
        classes: the M target classes.
        confidence: per run, the M elites' confidences.
        real: (images, labels) of real images (the reference), or None.

    Returns:
        JSON-ready lists (one entry per class, None where not measurable) and their medians.
    """
    bounds = classifier.bounds
    stacked = torch.stack([r.cpu() for r in runs])  # (R, M, C, H, W)
    r, m = stacked.shape[:2]
    feats = penultimate(classifier, stacked.reshape(r * m, *stacked.shape[2:]))
    feats = None if feats is None else feats.reshape(r, m, -1)
    out: dict[str, list[float | None]] = {"pixel": [], "feature": [], "real_pixel": [], "real_feature": [],
                                          "real_count": []}  # fmt: skip
    for j, c in enumerate(classes):
        out["pixel"].append(mean_pairwise(_unit(stacked[:, j], bounds)))
        out["feature"].append(None if feats is None else mean_pairwise(feats[:, j]))
        x = None if real is None else real[0][real[1] == c][:REAL_LIMIT]
        n = 0 if x is None else int(x.shape[0])
        out["real_count"].append(n)
        if x is None or n < 2:
            out["real_pixel"].append(None)
            out["real_feature"].append(None)
            continue
        out["real_pixel"].append(mean_pairwise(_unit(x.cpu(), bounds)))
        fx = penultimate(classifier, x)
        out["real_feature"].append(None if fx is None else mean_pairwise(fx))
    conf = torch.tensor(confidence, dtype=torch.float64)  # (R, M)
    result: dict[str, Any] = {"runs": r, "classes": list(classes), **out}
    result["mean_confidence"] = float(conf.mean())
    result["per_class_mean_confidence"] = conf.mean(0).tolist()
    for key in ("pixel", "feature", "real_pixel", "real_feature"):
        values = [v for v in out[key] if v is not None]
        result[f"median_{key}"] = float(statistics.median(values)) if values else None
    return result
