"""Ray: one population scored by model replicas on several workers (optional extra ``foolbench[ray]``)."""

from __future__ import annotations

import importlib
import itertools
import os
import socket
from collections.abc import Callable
from typing import Any

import torch

from foolbench import _checks
from foolbench.encodings import Encoding, Genomes
from foolbench.errors import FoolbenchError, InvalidArgumentError, InvalidTypeError, MissingDependencyError
from foolbench.models import Classifier

__all__ = ["RayEvaluator", "WorkerError", "connect", "require_ray"]

ModelFactory = str | Callable[[], Classifier]


class WorkerError(FoolbenchError, RuntimeError):
    """A Ray worker died or failed, and retrying did not help.

    Examples:
        >>> issubclass(WorkerError, FoolbenchError)
        True
    """


class EvaluatorClosedError(FoolbenchError, RuntimeError):
    """A :class:`RayEvaluator` was called after :meth:`RayEvaluator.close` stopped its replicas.

    Examples:
        >>> issubclass(EvaluatorClosedError, FoolbenchError), issubclass(EvaluatorClosedError, RuntimeError)
        (True, True)
    """


def require_ray() -> Any:
    """Import and return :mod:`ray`, or raise one clear error naming the extra.

    Raises:
        MissingDependencyError: Ray is not installed.
    """
    try:
        import ray
    except ImportError as err:
        raise MissingDependencyError(
            "Ray is not installed: pip install 'foolbench[ray]' to spread work over processes, GPUs or machines"
        ) from err
    return ray


def _probe(address: str, timeout: float) -> None:
    """Raise :class:`InvalidArgumentError` unless a TCP connection to ``[ray://]HOST:PORT`` opens in time.

    ``ray.init`` waits minutes (retrying the cluster's control service) before it gives up on an
    address nobody listens at; one socket connect answers in ``timeout`` seconds.
    """
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InvalidArgumentError(
            f"address must be 'auto', 'local', 'HOST:PORT' or 'ray://HOST:PORT', got {address!r}"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as err:
        detail = f"no answer within {timeout:g} s" if isinstance(err, TimeoutError) else str(err)
        raise InvalidArgumentError(
            f"cannot reach the Ray cluster at address {address!r}: {detail} (is 'ray start --head' running there?)"
        ) from err


def connect(address: str | None = "auto", *, num_cpus: int | None = None, timeout: float = 10.0) -> Any:
    """Join a Ray cluster (``"auto"``: the one ``RAY_ADDRESS`` or ``ray start`` names, else start one here).

    Args:
        address: ``"auto"``, ``"local"`` (always a new local cluster) or ``"ray://HOST:PORT"``/``"HOST:PORT"``.
        num_cpus: CPUs of a local cluster started here.
        timeout: seconds to wait for a TCP connection to a named cluster before giving up.

    Returns:
        The :mod:`ray` module, initialised.

    Raises:
        MissingDependencyError: Ray is not installed.
        InvalidTypeError: ``address`` is not a string or None.
        InvalidArgumentError: the address cannot be reached.
    """
    if address is not None and not isinstance(address, str):
        raise InvalidTypeError(
            f"address must be 'auto', 'local', 'HOST:PORT', 'ray://HOST:PORT' or None, got {type(address).__name__}"
        )
    ray = require_ray()
    if ray.is_initialized():
        return ray
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address in ("auto", None) and not os.environ.get("RAY_ADDRESS"):
        address = None  # no cluster named anywhere: start a local one
    # "local" goes to ray.init as it is: a new cluster, never RAY_ADDRESS's or the last `ray start`'s
    if address in (None, "local") and num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    timeout = _checks.real("timeout", timeout, low=0.0, low_open=True)
    named = os.environ.get("RAY_ADDRESS") if address in ("auto", None) else address
    if named and named not in ("auto", "local"):
        _probe(named, timeout)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InvalidArgumentError(f"cannot reach the Ray cluster at address {address!r}: {first}") from err
    return ray


def resolve_factory(factory: ModelFactory) -> Callable[[], Classifier]:
    """Turn ``"module:function"`` into the function (imported here), or check a callable."""
    if callable(factory):
        return factory
    if not isinstance(factory, str) or factory.count(":") != 1:
        raise InvalidTypeError(f"model_factory must be a callable or a 'module:function' string, got {factory!r}")
    module_name, _, attr = factory.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise InvalidArgumentError(f"model_factory {factory!r} cannot be imported: {err}") from err
    if not callable(fn):
        raise InvalidTypeError(f"model_factory {factory!r} is not callable")
    return fn  # type: ignore[no-any-return]


class _Replica:
    """A Ray actor: one model replica that renders and scores genomes (on its own GPU when it has one)."""

    def __init__(self, factory: ModelFactory, encoding: Encoding, threads: int | None) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        from foolbench.search import LocalEvaluator

        clf = resolve_factory(factory)()
        from foolbench.models import weights_digest

        network = getattr(clf, "network", None)
        self.digest = weights_digest(network()) if callable(network) else None
        import ray

        # only a replica Ray gave a GPU uses one: Ray does not hide the GPUs from a zero-GPU actor, and
        # "cuda" there would put every replica on the first GPU, outside Ray's scheduling
        if ray.get_gpu_ids() and torch.cuda.is_available() and hasattr(clf, "to"):
            clf = clf.to("cuda")
        self.local = LocalEvaluator(clf, encoding)

    def score(self, genomes: Genomes, columns: torch.Tensor | None) -> torch.Tensor:
        with torch.no_grad():
            return self.local(genomes, columns=columns).cpu()

    def pid(self) -> int:
        return os.getpid()

    def model_digest(self) -> str | None:
        return self.digest


def _nbytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.element_size() * obj.numel()
    as_dict = getattr(obj, "as_dict", None)
    if callable(as_dict):
        return sum(_nbytes(v) for v in as_dict().values())
    return 0


class RayEvaluator:
    """Score one population on ``num_workers`` model replicas (Ray actors), one slice of the batch each.

    The search sends genomes (a CPPN genome is a few KB; a direct genome is its
    image) and gets back only the columns of the archive's classes. The batch is
    cut into contiguous slices in a fixed order and the scores are put back in
    that order, so a search gets the same result as with
    :class:`~foolbench.search.LocalEvaluator` wherever the model's per-image output
    does not depend on the batch it is computed in. A worker that dies is
    restarted and its slice retried once; if it fails again, :class:`WorkerError`
    is raised and the search rolls its RNG back (a checkpoint on disk stays
    valid).

    Args:
        model_factory: ``"module:function"`` (imported on each worker) or a picklable callable that
            returns a :class:`~foolbench.models.Classifier`.
        encoding: the search's encoding (genomes are rendered on the workers).
        num_workers: model replicas.
        num_gpus: GPUs per replica (default: 1 when the cluster has GPUs, else 0).
        num_cpus: CPUs per replica.
        threads: torch threads per replica (default: ``num_cpus``).
        address: Ray cluster to join when Ray is not initialised yet (see :func:`connect`).

    Attributes:
        model_digest: :func:`~foolbench.models.weights_digest` of the replicas' model (None where it has no
            ``network()``); a search whose classifier has other weights refuses this evaluator.

    Raises:
        MissingDependencyError: Ray is not installed.
        InvalidArgumentError: bad counts, an unreachable cluster, resources the cluster lacks; a call with
            an empty batch.
        EvaluatorClosedError: a call after :meth:`close`.

    Shape:
        - genomes: a batch of B genomes.
        - output: (B, K) or (B, M) log-probabilities on the CPU.
    """

    def __init__(
        self,
        model_factory: ModelFactory,
        encoding: Encoding,
        *,
        num_workers: int = 2,
        num_gpus: float | None = None,
        num_cpus: float = 1,
        threads: int | None = None,
        address: str | None = "auto",
    ) -> None:
        if not callable(model_factory) and not isinstance(model_factory, str):
            raise InvalidTypeError(
                f"model_factory must be a callable or a 'module:function' string, got {type(model_factory).__name__}"
            )
        from foolbench.search._evaluator import check_encoding

        check_encoding(encoding)  # here, not blamed on the model factory after the workers started
        self.num_workers = _checks.positive_int("num_workers", num_workers)
        self.num_cpus = _checks.real("num_cpus", num_cpus, low=0.0)
        self.threads = _checks.optional_positive_int("threads", threads) or max(1, int(self.num_cpus))
        ray = connect(address)
        gpus_total = float(ray.cluster_resources().get("GPU", 0))
        self.num_gpus = (1.0 if gpus_total >= self.num_workers else 0.0) if num_gpus is None else num_gpus
        _checks.real("num_gpus", self.num_gpus, low=0.0)
        cpus_total = float(ray.cluster_resources().get("CPU", 0))
        if self.num_cpus * self.num_workers > cpus_total or self.num_gpus * self.num_workers > gpus_total:
            raise InvalidArgumentError(
                f"num_workers={self.num_workers} x (num_cpus={self.num_cpus:g}, num_gpus={self.num_gpus:g}) "
                f"asks for more than the cluster has ({cpus_total:g} CPUs, {gpus_total:g} GPUs)"
            )
        self._ray = ray
        self.model_factory = model_factory
        self.encoding = encoding
        self._actor_cls = ray.remote(
            num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_restarts=1, max_task_retries=1
        )(_Replica)
        self._actors = [self._spawn() for _ in range(self.num_workers)]
        self._check_started()
        self.bytes_sent = 0
        self.bytes_received = 0
        self.batches = 0

    def _spawn(self) -> Any:
        return self._actor_cls.remote(self.model_factory, self.encoding, self.threads)

    def _check_started(self) -> None:
        try:
            self._ray.get([a.pid.remote() for a in self._actors], timeout=300)
            # the replicas' weights: a search refuses an evaluator that scores with another model than its own
            self.model_digest: str | None = self._ray.get(self._actors[0].model_digest.remote(), timeout=300)
        except Exception as err:
            self.close()
            raise InvalidArgumentError(
                f"model_factory {self.model_factory!r} could not build a model on the Ray workers: {_first_line(err)}"
            ) from err

    def __repr__(self) -> str:
        return (
            f"RayEvaluator(model_factory={self.model_factory!r}, num_workers={self.num_workers}, "
            f"num_gpus={self.num_gpus:g}, num_cpus={self.num_cpus:g})"
        )

    def worker_pids(self) -> list[int]:
        """The process id of each replica (for tests and monitoring)."""
        return [int(p) for p in self._ray.get([a.pid.remote() for a in self._actors])]

    def __call__(self, genomes: Genomes, *, columns: torch.Tensor | None = None) -> torch.Tensor:
        if not self._actors:
            raise EvaluatorClosedError("this RayEvaluator is closed: its replicas were stopped by close()")
        b = len(genomes)
        if b == 0:
            raise InvalidArgumentError("genomes must hold at least one genome, got an empty batch")
        cols = None if columns is None else columns.cpu()
        bounds = [round(i * b / self.num_workers) for i in range(self.num_workers + 1)]
        slices = [(lo, hi) for lo, hi in itertools.pairwise(bounds) if hi > lo]
        parts = [_to_cpu(genomes[torch.arange(lo, hi)]) for lo, hi in slices]
        self.bytes_sent += sum(_nbytes(p) for p in parts)
        futures = [self._actors[i].score.remote(p, cols) for i, p in enumerate(parts)]
        out = [self._get(i, f) for i, f in enumerate(futures)]
        scores = torch.cat(out)
        self.bytes_received += _nbytes(scores)
        self.batches += 1
        return scores

    def _get(self, i: int, future: Any) -> torch.Tensor:
        # A replica that dies restarts once and Ray retries its call there (max_task_retries=1); what
        # still fails after that is a dead worker or an error in the model: one clear WorkerError.
        ray = self._ray
        try:
            return ray.get(future)  # type: ignore[no-any-return]
        except ray.exceptions.RayActorError as err:
            raise WorkerError(
                f"Ray worker {i} died while scoring genomes and was not brought back: {_first_line(err)}"
            ) from err
        except ray.exceptions.RayTaskError as err:
            raise WorkerError(f"a Ray worker failed while scoring genomes: {_first_line(err)}") from err

    def close(self) -> None:
        """Stop the replicas (the cluster keeps running); nothing to do once Ray is shut down."""
        actors, self._actors = getattr(self, "_actors", []), []
        if (
            not actors or not self._ray.is_initialized()
        ):  # ray.shutdown() already stopped them (an error here would mask another)
            return
        for actor in actors:
            self._ray.kill(actor)

    def __enter__(self) -> RayEvaluator:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _to_cpu(genomes: Genomes) -> Genomes:
    to = getattr(genomes, "to", None)
    return to("cpu") if callable(to) else genomes


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__
