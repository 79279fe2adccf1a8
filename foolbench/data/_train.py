"""A small, explicit, seeded training loop (used for the shipped LeNet, by defenses and by bench)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from foolbench import _checks
from foolbench.errors import InvalidArgumentError, InvalidTypeError

__all__ = ["train_classifier"]


def _shift(x: torch.Tensor, gen: torch.Generator, max_shift: int) -> torch.Tensor:
    """Random integer translations of up to ``max_shift`` pixels (zero fill), one per image."""
    if max_shift == 0:
        return x
    b, _, h, w = x.shape
    pad = F.pad(x, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None]).to(x.device)
    cols = (dx[:, None] + torch.arange(w)[None]).to(x.device)
    bi = torch.arange(b, device=x.device)[:, None, None]
    return pad[bi, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def _noise(n: int, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """``n`` uniform-noise images, each at a random contrast: U(0, 1) pixels times one U(0, 1) factor per image."""
    pixels = torch.rand((n, *shape), generator=gen)
    return pixels * torch.rand((n, 1, 1, 1), generator=gen)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with torch on ``n`` CPU threads, then restore the caller's thread count.

    CPU kernels split their sums differently with the thread count, so the same
    training gives weights that differ in the last bits at 1 and at 2 threads, and
    after many steps the difference grows. A fixed count (1 in
    :func:`train_classifier`) makes CPU training bit-identical whatever the
    caller's setting. ``None`` leaves torch's setting as it is.

    Examples:
        >>> import torch
        >>> before = torch.get_num_threads()
        >>> with torch_threads(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_classifier(
    module: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int = 15,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    max_shift: int = 2,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    noise_share: float = 0.0,
    noise_weight: float = 0.5,
    seed: int = 0,
    threads: int | None = 1,
) -> nn.Module:
    """Train ``module`` with Adam on (images, labels); small, explicit and seeded.

    Used for the shipped LeNet, by the retraining defenses, by bench and by the
    tests to build independent MNIST models. The whole module trains in training
    mode (``module.train()``: a BatchNorm set to eval mode updates its statistics
    too); afterwards every submodule's ``training`` flag is put back as it was.

    Training runs on one CPU thread by default (torch's thread count is set to 1
    and put back afterwards), so the same call gives bit-identical weights
    whatever ``torch.set_num_threads`` or ``OMP_NUM_THREADS`` the caller uses. On
    a loaded 2-core CPU this was also 3x faster than 2 threads for LeNet. On
    CUDA the thread count does not touch the arithmetic.

    Args:
        module: the network to train in place.
        images: (N, C, H, W) raw training images, cast to the module's dtype and device batch by batch;
            in [0, 1] when ``noise_share`` > 0 (the noise images are drawn there).
        labels: (N,) class indices, each below the module's number of outputs.
        epochs: passes over the data.
        batch_size: mini-batch size.
        lr: Adam peak learning rate (one-cycle schedule: warm-up, then cosine decay to near zero).
        weight_decay: Adam weight decay.
        max_shift: random translation augmentation in pixels (0 turns it off); smaller than
            the images' height and width.
        preprocess: applied to each batch before the module (e.g. normalisation).
        noise_share: outlier exposure (Hendrycks et al., ICLR 2019): each batch of
            ``b`` images gets ``round(noise_share * b)`` extra uniform-noise images
            (U(0, 1) pixels at a random contrast), trained towards the uniform
            distribution over classes, so that noise gets low confidence. 0 (the
            default) turns it off and draws no extra random numbers.
        noise_weight: weight of the noise images' loss (cross-entropy to the uniform
            distribution) next to the real images' cross-entropy.
        seed: seeds shuffling, augmentation and nothing else (an int in [0, 2**64)); initialise
            the module's weights yourself before calling.
        threads: torch CPU threads while training (restored afterwards); the
            default 1 makes the weights independent of the machine's thread
            setting. ``None`` keeps the caller's setting (faster for big models
            on many idle cores; then the weights depend on the thread count).

    Returns:
        The trained module.

    Raises:
        InvalidTypeError: ``module`` is not an ``nn.Module``, ``preprocess`` is not callable, or an
            argument has the wrong type.
        InvalidArgumentError: an argument out of its range (``lr`` <= 0, ``max_shift`` < 0 or as large
            as the images, ``seed`` < 0, ...), or images and labels that do not match.

    Examples:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
        >>> x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
        >>> train_classifier(net, x, y, epochs=1, batch_size=16) is net
        True
    """
    if not isinstance(module, nn.Module):
        raise InvalidTypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    _checks.positive_int("epochs", epochs)
    _checks.positive_int("batch_size", batch_size)
    lr = _checks.real("lr", lr, low=0.0, low_open=True)
    weight_decay = _checks.real("weight_decay", weight_decay, low=0.0)
    _checks.nonnegative_int("max_shift", max_shift)
    if preprocess is not None and not callable(preprocess):
        raise InvalidTypeError(f"preprocess must be callable or None, got {type(preprocess).__name__}")
    _checks.real("noise_share", noise_share, low=0.0, high=16.0)
    _checks.real("noise_weight", noise_weight, low=0.0)
    _checks.seed_int("seed", seed)
    _checks.optional_positive_int("threads", threads)
    x = _checks.images("images", images, bounds=(0.0, 1.0) if noise_share else None)
    y = _checks.labels("labels", labels, batch=x.shape[0], num_classes=1 << 30)
    height, width = x.shape[2:]
    if max_shift >= min(height, width):
        raise InvalidArgumentError(
            f"max_shift must be smaller than the images' height and width ({height} x {width}), got {max_shift}"
        )
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * -(-x.shape[0] // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    flags = [(m, m.training) for m in module.modules()]
    param = next((p for p in module.parameters() if p.is_floating_point()), None)
    device, dtype = (param.device, param.dtype) if param is not None else (x.device, x.dtype)
    checked = False
    module.train()
    try:
        with torch_threads(threads):
            for _ in range(epochs):
                order = torch.randperm(x.shape[0], generator=gen)
                for idx in torch.split(order, batch_size):
                    xb = _shift(x[idx], gen, max_shift)
                    extra = round(noise_share * len(idx))
                    if extra:
                        xb = torch.cat([xb, _noise(extra, tuple(x.shape[1:]), gen).to(xb.device, xb.dtype)])
                    xb = xb.to(device, dtype)  # float64 data for a float32 module, CPU data for a CUDA one
                    if preprocess is not None:
                        xb = preprocess(xb)
                    logits = module(xb)
                    if not checked:  # once: the module's outputs are known only now
                        checked = True
                        if logits.dim() != 2 or int(y.max()) >= logits.shape[1]:
                            raise InvalidArgumentError(
                                f"labels must be class indices below the module's {logits.shape[-1]} outputs "
                                f"(logits of shape (B, classes)), got labels up to {int(y.max())} and logits of "
                                f"shape {tuple(logits.shape)}"
                            )
                    loss = F.cross_entropy(logits[: len(idx)], y[idx].to(xb.device))
                    if extra:
                        loss = loss - noise_weight * logits[len(idx) :].log_softmax(1).mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
    finally:
        for m, flag in flags:
            m.training = flag
    return module
