"""Ray: one population scored by model replicas on several workers (optional extra ``foolbench[ray]``)."""

from __future__ import annotations

import importlib
import itertools
import math
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
        InvalidTypeError: ``address`` is not a string or None, ``num_cpus`` not an int.
        InvalidArgumentError: the address cannot be reached; a negative ``num_cpus``.
    """
    if address is not None and not isinstance(address, str):
        raise InvalidTypeError(
            f"address must be 'auto', 'local', 'HOST:PORT', 'ray://HOST:PORT' or None, got {type(address).__name__}"
        )
    if num_cpus is not None:
        num_cpus = _checks.nonnegative_int("num_cpus", num_cpus)  # not blamed on the cluster by ray.init
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
        from foolbench.search._evaluator import identity_digests

        clf = resolve_factory(factory)()
        from foolbench.models import weights_digest

        network = getattr(clf, "network", None)
        weights = weights_digest(network()) if callable(network) else None
        # what else decides the scores: preprocessing or a defense, the architecture, the encoding's settings
        self.digests = (weights, *identity_digests(clf, encoding))
        import ray

        # only a replica Ray gave a GPU uses one: Ray does not hide the GPUs from a zero-GPU actor, and
        # "cuda" there would put every replica on the first GPU, outside Ray's scheduling
        if ray.get_gpu_ids() and torch.cuda.is_available() and hasattr(clf, "to"):
            clf = clf.to("cuda")
        self.local = LocalEvaluator(clf, encoding)

    def score(
        self, genomes: Genomes, columns: torch.Tensor | None
    ) -> tuple[torch.Tensor, tuple[str | None, str | None, str | None, str | None]]:
        """The scores, with the digests of the model that gave them (a restarted replica built its model anew)."""
        with torch.no_grad():
            return self.local(genomes, columns=columns).cpu(), self.digests

    def pid(self) -> int:
        return os.getpid()

    def model_digests(self) -> tuple[str | None, str | None, str | None, str | None]:
        return self.digests


def gpu_share(num_gpus: Any) -> float:
    """``num_gpus`` per replica or task, checked: a number >= 0 that, above 1, is whole (Ray's rule).

    Examples:
        >>> gpu_share(0.5), gpu_share(2)
        (0.5, 2.0)
    """
    share = _checks.real("num_gpus", num_gpus, low=0.0)
    if share > 1 and not share.is_integer():
        raise InvalidArgumentError(
            f"num_gpus above 1 must be a whole number of GPUs (Ray shares only a part of one GPU), got {share:g}"
        )
    return share


def check_gpu_packing(num_gpus: float, num_workers: int, gpus_total: float) -> None:
    """Refuse replicas whose fractional GPU shares cannot all be placed on the cluster's whole GPUs.

    A share ``g < 1`` is placed within one GPU: ``floor(1 / g)`` of them fit on each, so
    ``floor(1 / g) * floor(gpus_total)`` replicas fit in all (checked on the cluster's total, not per node).

    Examples:
        >>> check_gpu_packing(0.5, 4, 2.0)
        >>> check_gpu_packing(0.6, 3, 2.0)
        Traceback (most recent call last):
        ...
        foolbench.errors.InvalidArgumentError: num_workers=3 replicas with num_gpus=0.6 each do not fit on the cluster's 2 GPUs: at most 1 such share fits on one GPU, 2 in all; ask for num_gpus=0.5 or fewer workers
    """
    if not 0 < num_gpus < 1 or gpus_total < 1:
        return
    per_gpu = math.floor(1 / num_gpus + 1e-9)
    fit = per_gpu * math.floor(gpus_total)
    if fit < num_workers:
        best = math.floor(10_000 / math.ceil(num_workers / math.floor(gpus_total))) / 10_000
        raise InvalidArgumentError(
            f"num_workers={num_workers} replicas with num_gpus={num_gpus:g} each do not fit on the cluster's "
            f"{gpus_total:g} GPUs: at most {per_gpu} such share{'s' if per_gpu > 1 else ''} fit"
            f"{'' if per_gpu > 1 else 's'} on one GPU, {fit} in all; ask for num_gpus={best:g} or fewer workers"
        )


def default_num_gpus(gpus: float, num_workers: int) -> float:
    """GPUs per replica when none are asked for: an equal share of the cluster's ``gpus``, at most one each.

    With ``G >= 1`` GPUs each replica gets ``1 / ceil(num_workers / G)`` of one (1 when there are as
    many GPUs as replicas, 1/2 for two replicas on one GPU), so the shares pack onto whole GPUs; with
    under one GPU, ``gpus / num_workers``; with none, 0. Shares are rounded down to Ray's 0.0001.

    Examples:
        >>> default_num_gpus(4, 2), default_num_gpus(1, 2), default_num_gpus(2, 3), default_num_gpus(0, 2)
        (1.0, 0.5, 0.5, 0.0)
    """
    if gpus <= 0:
        return 0.0
    share = 1.0 / math.ceil(num_workers / math.floor(gpus)) if gpus >= 1 else gpus / num_workers
    return math.floor(share * 10_000) / 10_000


def _different_weights(factory: ModelFactory, what: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"model_factory {factory!r} {what}: the replicas would score their slices of a batch with different "
        "models; seed the factory (torch.manual_seed before building the model) or have it load fixed weights"
    )


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
        num_gpus: GPUs per replica (default: with ``G >= 1`` GPUs in the cluster, ``1 / ceil(num_workers / G)``,
            rounded down to 0.0001: 1 when there are at least as many GPUs as replicas, else an equal share of
            one GPU, so every replica runs on a GPU; with under one GPU, an equal share of it; with none, 0).
        num_cpus: CPUs per replica.
        threads: torch threads per replica (default: ``num_cpus``).
        address: Ray cluster to join when Ray is not initialised yet (see :func:`connect`).

    Attributes:
        model_digest: :func:`~foolbench.models.weights_digest` of the replicas' model (None where it has no
            ``network()``); a search whose classifier has other weights refuses this evaluator.
            Every replica's digest is checked against it, at start and after Ray restarts one.
        scoring_digest: digest of the replicas' classifier's :meth:`~foolbench.models.BaseClassifier.identity`
            (preprocessing, a defense), as a search keeps it; a search whose classifier differs refuses this
            evaluator (None when unknown).
        architecture_digest: :func:`~foolbench.models._classifier.architecture_digest` of the replicas' model
            (None when unknown); checked by a search like the weights.
        encoding_digest: digest of the replicas' ``encoding.config()``; a search with another encoding (even
            of the same image shape) refuses this evaluator.

    Raises:
        MissingDependencyError: Ray is not installed.
        InvalidArgumentError: bad counts, an unreachable cluster, resources the cluster lacks; replicas the
            factory built with different weights (the evaluator is then closed); a call with an empty batch.
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
        if num_gpus is None:
            self.num_gpus = default_num_gpus(gpus_total, self.num_workers)
        else:
            self.num_gpus = gpu_share(num_gpus)
        cpus_total = float(ray.cluster_resources().get("CPU", 0))
        if self.num_cpus * self.num_workers > cpus_total or self.num_gpus * self.num_workers > gpus_total:
            raise InvalidArgumentError(
                f"num_workers={self.num_workers} x (num_cpus={self.num_cpus:g}, num_gpus={self.num_gpus:g}) "
                f"asks for more than the cluster has ({cpus_total:g} CPUs, {gpus_total:g} GPUs)"
            )
        check_gpu_packing(self.num_gpus, self.num_workers, gpus_total)
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
            reported = self._ray.get([a.model_digests.remote() for a in self._actors], timeout=300)
        except self._ray.exceptions.GetTimeoutError as err:
            self.close()
            raise InvalidArgumentError(
                f"the replicas (num_workers={self.num_workers}, num_cpus={self.num_cpus:g}, "
                f"num_gpus={self.num_gpus:g} each) were not placed and built within 300 s: the cluster may have "
                f"no node with these resources free, or model_factory {self.model_factory!r} may hang"
            ) from err
        except Exception as err:
            self.close()
            raise InvalidArgumentError(
                f"model_factory {self.model_factory!r} could not build a model on the Ray workers: {_first_line(err)}"
            ) from err
        digests: list[tuple[str | None, ...]] = [tuple(d) for d in reported]
        weights = [d[0] for d in digests]
        if len(set(weights)) > 1:  # an unseeded factory: each replica its own random weights
            self.close()
            raise _different_weights(
                self.model_factory, f"built replicas with different weights (digests {', '.join(map(str, weights))})"
            )
        if len(set(digests)) > 1:  # same weights, other preprocessing, defense or architecture
            self.close()
            raise InvalidArgumentError(
                f"model_factory {self.model_factory!r} built replicas that score differently (same weights, other "
                f"preprocessing, defense or architecture: digests {', '.join(map(str, digests))}); the replicas "
                "would score their slices of a batch with different models"
            )
        self._digests = digests[0]
        # the replicas' model: a search refuses an evaluator that scores with another model than its own
        self.model_digest: str | None = digests[0][0]
        self.scoring_digest: str | None = digests[0][1]
        self.architecture_digest: str | None = digests[0][2]
        self.encoding_digest: str | None = digests[0][3]

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
            scores, reported = ray.get(future)
        except ray.exceptions.RayActorError as err:
            raise WorkerError(
                f"Ray worker {i} died while scoring genomes and was not brought back: {_first_line(err)}"
            ) from err
        except ray.exceptions.RayTaskError as err:
            raise WorkerError(f"a Ray worker failed while scoring genomes: {_first_line(err)}") from err
        digest = reported[0]
        if digest != self.model_digest:  # Ray restarted the replica, and the factory built other weights
            self.close()
            raise _different_weights(
                self.model_factory,
                f"built other weights when Ray restarted worker {i} (digest {digest}, the replicas' {self.model_digest})",
            )
        if tuple(reported) != self._digests:  # same weights, another preprocessing, defense or architecture
            self.close()
            raise InvalidArgumentError(
                f"model_factory {self.model_factory!r} built another model when Ray restarted worker {i} (same "
                f"weights, digests {tuple(reported)} against the replicas' {self._digests}): the replicas would "
                "score their slices of a batch with different models"
            )
        return scores  # type: ignore[no-any-return]

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
    """``Type: first line of the message`` of the error a Ray task or actor raised, without Ray's wrapping.

    A :class:`ray.exceptions.RayTaskError` holds the task's own exception as ``cause``. An actor whose
    creation task failed keeps only that error's text, traceback included: its exception line (the first
    unindented line after the last frame) is taken. Other errors: their last non-empty line, else their type.
    """
    task_error = require_ray().exceptions.RayTaskError
    unwrapped = False
    for _ in range(8):  # a task that got a failed task's result: a RayTaskError inside a RayTaskError
        cause = getattr(err, "cause", None)
        if not isinstance(err, task_error) or not isinstance(cause, BaseException) or cause is err:
            break
        err, unwrapped = cause, True
    lines = [line for line in str(err).splitlines() if line.strip()]
    if unwrapped:
        return f"{type(err).__name__}: {lines[0].strip()}" if lines else type(err).__name__
    frames = [k for k, line in enumerate(lines) if line[:1].isspace() and line.lstrip().startswith('File "')]
    if frames:
        after = [line for line in lines[frames[-1] + 1 :] if not line[:1].isspace()]
        if after:
            return after[0].strip()
    return lines[-1].strip() if lines else type(err).__name__
