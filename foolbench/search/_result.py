"""The result of a fooling-image search (evolution or gradient ascent)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from foolbench import _checks, _io
from foolbench.errors import InvalidArgumentError

__all__ = ["FoolingResult", "History"]


@dataclass(frozen=True)
class History:
    """Per-generation (or per-step) record of a search.

    Attributes:
        evaluations: (G,) int64, evaluations used when each record was taken.
        confidence: (G, K) float64, best confidence per target class at each record.

    Examples:
        >>> import foolbench as fb
        >>> res = fb.search.MAPElites(fb.models.lenet_mnist(), fb.encodings.DirectEncoding((1, 28, 28)), batch_size=16, seed=0).run(generations=3, progress=False)
        >>> res.history.evaluations.tolist(), tuple(res.history.confidence.shape)
        ([16, 32, 48], (3, 10))
    """

    evaluations: torch.Tensor
    confidence: torch.Tensor

    @property
    def best(self) -> torch.Tensor:
        """(G,) highest confidence over the classes at each record."""
        return self.confidence.max(dim=1).values

    @property
    def median(self) -> torch.Tensor:
        """(G,) median confidence over the classes at each record.

        For an even number of classes this is the lower median, as :func:`torch.median` takes it (the
        K/2-th smallest value, not the mean of the two middle ones): never above the usual median.

        Examples:
            >>> conf = torch.tensor([[0.8, 0.2, 0.6, 0.4]], dtype=torch.float64)
            >>> History(torch.tensor([4]), conf).median.tolist()
            [0.4]
        """
        return self.confidence.median(dim=1).values

    def __len__(self) -> int:
        return int(self.evaluations.shape[0])


@dataclass(frozen=True)
class FoolingResult:
    """Fooling images found by a search: one image per target class.

    Attributes:
        images: (K, C, H, W) best image per target class, inside the classifier's bounds.
        confidence: (K,) float64 classifier confidence (softmax probability) of its class.
        classes: (K,) int64 target class indices.
        evaluations: images evaluated by the classifier during the search.
        seconds: wall time of the search.
        history: best confidence per class over the search.
        class_names: names of the target classes.
        method: name of the search that produced the result.
        found_at: (K,) int64 evaluation count when each image was found.
        settings: the search settings (for reports).

    The median confidence of its repr, :meth:`summary` and :meth:`to_markdown` is the lower median for
    an even number of classes, as :func:`torch.median` takes it (of 10 classes, the 5th smallest
    confidence): never above the usual median.

    Examples:
        >>> import torch
        >>> r = FoolingResult(images=torch.zeros(2, 1, 4, 4), confidence=torch.tensor([0.99999, 0.5]).double(),
        ...                   classes=torch.tensor([3, 7]), evaluations=10, seconds=0.1,
        ...                   history=History(torch.tensor([10]), torch.tensor([[0.99999, 0.5]]).double()),
        ...                   class_names=("3", "7"), method="demo", found_at=torch.tensor([10, 10]))
        >>> r.fooled(0.9999).tolist()
        [True, False]
    """

    images: torch.Tensor
    confidence: torch.Tensor
    classes: torch.Tensor
    evaluations: int
    seconds: float
    history: History
    class_names: tuple[str, ...]
    method: str
    found_at: torch.Tensor
    settings: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        conf = self.confidence
        median = float(conf.median()) if conf.numel() else math.nan
        return (
            f"FoolingResult(method={self.method!r}, classes={len(self.classes)}, "
            f"images={tuple(self.images.shape)}, median_confidence={median:.6f}, "
            f"fooled_at_0.9999={int(self.fooled(0.9999).sum())}/{len(self.classes)}, "
            f"evaluations={self.evaluations}, seconds={self.seconds:.1f})"
        )

    def fooled(self, threshold: float = 0.9999) -> torch.Tensor:
        """(K,) bool: which classes reached ``threshold`` confidence, a number in (0, 1]."""
        return self.confidence >= _checks.real("threshold", threshold, low=0.0, high=1.0, low_open=True)

    def most_confident(self, k: int) -> FoolingResult:
        """The ``k`` classes with the highest confidence, most confident first (ties in class order).

        Images, confidences, classes, names, ``found_at`` and the history's columns are all cut to those
        classes; a 1,000-class result's grid of the best 64 is ``result.most_confident(64).save_png(...)``.

        Raises:
            InvalidArgumentError: ``k`` is not an integer >= 1.

        Examples:
            >>> r = FoolingResult(images=torch.zeros(3, 1, 2, 2), confidence=torch.tensor([0.2, 0.9, 0.5]).double(),
            ...                   classes=torch.tensor([4, 5, 6]), evaluations=3, seconds=0.1,
            ...                   history=History(torch.tensor([3]), torch.tensor([[0.25, 0.75, 0.5]]).double()),
            ...                   class_names=("4", "5", "6"), method="demo", found_at=torch.tensor([1, 2, 3]))
            >>> top = r.most_confident(2)
            >>> top.classes.tolist(), top.class_names, top.history.confidence.tolist()
            ([5, 6], ('5', '6'), [[0.75, 0.5]])
        """
        k = _checks.positive_int("k", k)
        top = self.confidence.argsort(descending=True, stable=True)[:k]
        return replace(
            self,
            images=self.images[top.to(self.images.device)],
            confidence=self.confidence[top],
            classes=self.classes[top],
            class_names=tuple(self.class_names[int(i)] for i in top),
            found_at=self.found_at[top],
            history=History(self.history.evaluations, self.history.confidence[:, top]),
        )

    def evaluations_to(self, threshold: float = 0.9999) -> list[int | None]:
        """Evaluations at the first record where each class reached ``threshold`` in (0, 1] (None: never)."""
        reached = self.history.confidence >= _checks.real("threshold", threshold, low=0.0, high=1.0, low_open=True)
        out: list[int | None] = []
        for k in range(reached.shape[1]):
            idx = torch.nonzero(reached[:, k])
            out.append(int(self.history.evaluations[idx[0, 0]]) if idx.numel() else None)
        return out

    def summary(self, thresholds: tuple[float, ...] = (0.99, 0.9999)) -> dict[str, Any]:
        """A JSON-ready summary: per-class confidence, evaluations to each threshold, totals.

        Args:
            thresholds: confidences in (0, 1]; each gives the keys ``fooled_at_<t>`` and, per class,
                ``evaluations_to_<t>``, with ``<t>`` written as ``f"{t:g}"`` (``fooled_at_0.99``) or,
                where six digits would round it, exactly (``fooled_at_0.9999999``, not ``fooled_at_1``).

        Returns:
            The summary; ``median_confidence`` is the lower median for an even number of classes, as
            :func:`torch.median` takes it: never above the usual median.

        Raises:
            InvalidArgumentError: ``thresholds`` is empty or holds a number outside (0, 1].

        Examples:
            >>> conf = torch.tensor([0.8, 0.2, 0.6, 0.4], dtype=torch.float64)
            >>> r = FoolingResult(images=torch.zeros(4, 1, 2, 2), confidence=conf,
            ...                   classes=torch.arange(4), evaluations=4, seconds=0.1,
            ...                   history=History(torch.tensor([4]), conf[None]),
            ...                   class_names=("0", "1", "2", "3"), method="demo", found_at=torch.full((4,), 4))
            >>> s = r.summary(thresholds=(0.5, 0.7999999))
            >>> s["fooled_at_0.5"], s["fooled_at_0.7999999"], s["median_confidence"]
            (2, 1, 0.4)
        """
        if not isinstance(thresholds, tuple | list) or not thresholds:
            raise InvalidArgumentError(f"thresholds must be a non-empty tuple of numbers in (0, 1], got {thresholds!r}")
        thresholds = tuple(_checks.real("thresholds", t, low=0.0, high=1.0, low_open=True) for t in thresholds)
        key = {t: _io.exact_number(t) for t in thresholds}  # distinct thresholds, distinct keys
        per_class = []
        evals = {t: self.evaluations_to(t) for t in thresholds}
        for i, c in enumerate(self.classes.tolist()):
            per_class.append(
                {
                    "class": c,
                    "name": self.class_names[i],
                    "confidence": float(self.confidence[i]),
                    **{f"evaluations_to_{key[t]}": evals[t][i] for t in thresholds},
                }
            )
        conf = self.confidence
        return {
            "method": self.method,
            "evaluations": self.evaluations,
            "seconds": round(self.seconds, 3),
            "classes": len(per_class),
            **{f"fooled_at_{key[t]}": int(self.fooled(t).sum()) for t in thresholds},
            "median_confidence": float(conf.median()) if conf.numel() else math.nan,
            "min_confidence": float(conf.min()) if conf.numel() else math.nan,
            "settings": self.settings,
            "per_class": per_class,
        }

    def to_markdown(self, title: str = "Fooling images") -> str:
        """A Markdown report: the method, totals and a per-class table."""
        s = self.summary()
        lines = [
            f"# {title}",
            "",
            (
                f"Method: `{self.method}`; {self.evaluations:,} evaluations in {self.seconds:.1f} s; "
                f"{s['fooled_at_0.9999']}/{s['classes']} classes at >= 99.99% confidence, "
                f"{s['fooled_at_0.99']}/{s['classes']} at >= 99%; median confidence {s['median_confidence']:.6f}."
            ),
            "",
            "| class | name | confidence | evaluations to 99% | evaluations to 99.99% |",
            "|---:|---|---:|---:|---:|",
        ]
        for row in s["per_class"]:
            e1, e2 = row["evaluations_to_0.99"], row["evaluations_to_0.9999"]
            lines.append(
                f"| {row['class']} | {row['name']} | {row['confidence']:.6f} | "
                f"{'-' if e1 is None else f'{e1:,}'} | {'-' if e2 is None else f'{e2:,}'} |"
            )
        return "\n".join(lines) + "\n"

    def save_png(self, path: str | Path, *, columns: int | None = None) -> Path:
        """Save the images as a PNG grid captioned with class name and confidence."""
        captions = [f"{n}\n{100 * float(c):.4f}%" for n, c in zip(self.class_names, self.confidence, strict=True)]
        return _io.save_grid(self.images, captions, path, columns=columns)

    def save(self, out_dir: str | Path, *, prefix: str = "", title: str = "Fooling images") -> dict[str, Path]:
        """Write ``{prefix}images.png``, ``{prefix}summary.json``, ``{prefix}report.md`` and
        ``{prefix}images.pt`` (the raw tensors) to ``out_dir``; returns the paths."""
        out = Path(out_dir)
        png = self.save_png(out / f"{prefix}images.png")
        report = self.to_markdown(title) + f"\n![fooling images]({png.name})\n"
        paths = {
            "png": png,
            "json": _io.write_json(out / f"{prefix}summary.json", self.summary()),
            "markdown": _io.write_text(out / f"{prefix}report.md", report),
            "tensors": _io.save_torch(
                out / f"{prefix}images.pt",
                {"images": self.images.cpu(), "confidence": self.confidence.cpu(), "classes": self.classes.cpu()},
            ),
        }
        return paths
