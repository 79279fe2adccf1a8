"""RayEvaluator: same result as LocalEvaluator, worker death, bad input (needs the ``ray`` extra)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import foolbench as fb
from foolbench.distributed import RayEvaluator, WorkerError, require_ray
from foolbench.errors import InvalidArgumentError, InvalidTypeError, MissingDependencyError

FACTORY = "foolbench.models:lenet_mnist"


def test_missing_ray_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'foolbench\[ray\]'"):
        require_ray()


def test_bench_ray_without_the_extra_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from foolbench.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)
    code = main(["bench", "--suite", "quick", "--ray", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "foolbench[ray]" in err
    assert not (tmp_path / "o" / "results.json").exists()


ray = pytest.importorskip("ray")


def test_an_unreachable_address_fails_in_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    def init(**kwargs: Any) -> None:
        raise AssertionError("ray.init must not be called for an address nobody listens at")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    with pytest.raises(InvalidArgumentError, match=r"cannot reach the Ray cluster at address '127.0.0.1:1'"):
        fb.distributed.connect("127.0.0.1:1")  # refused at once
    # a host that never answers: the probe gives up after its timeout instead of ray.init's minutes
    # (simulated: the tests send nothing beyond this machine's loopback)
    seen: list[float] = []

    def silent(address: tuple[str, int], timeout: float) -> None:
        seen.append(timeout)
        raise TimeoutError("timed out")

    monkeypatch.setattr("foolbench.distributed._ray.socket.create_connection", silent)
    with pytest.raises(InvalidArgumentError, match=r"'ray://127.0.0.1:10001': no answer within 0.5 s"):
        fb.distributed.connect("ray://127.0.0.1:10001", timeout=0.5)
    assert seen == [0.5]
    monkeypatch.undo()
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    with pytest.raises(InvalidArgumentError, match="cannot reach"):
        fb.distributed.connect()  # "auto" follows RAY_ADDRESS
    with pytest.raises(InvalidArgumentError, match="address must be"):
        fb.distributed.connect("no-port-here")
    # "local" is a new cluster even where RAY_ADDRESS names one: no probe of it, "local" passed to ray.init
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    fb.distributed.connect("local", num_cpus=2)
    assert calls and calls[0]["address"] == "local" and calls[0]["num_cpus"] == 2
    with pytest.raises(InvalidTypeError, match="address must be .* got int"):
        fb.distributed.connect(5)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the replicas run one thread each: score the local reference the same way
    fb.distributed.connect("local", num_cpus=2)
    yield ray
    ray.shutdown()
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    "encoding",
    [
        fb.encodings.DirectEncoding((1, 28, 28), mutation_rate=0.02, eta=1.0),
        fb.encodings.CPPNEncoding((1, 28, 28)),
    ],
    ids=["direct", "cppn"],
)
def test_ray_run_equals_local_run(cluster: Any, lenet: fb.models.TorchClassifier, encoding: Any) -> None:
    with RayEvaluator(FACTORY, encoding, num_workers=2, threads=1) as remote:
        a = fb.search.MAPElites(lenet, encoding, batch_size=64, seed=3, evaluator=remote, classes=[0, 2, 5, 7])
        res = a.run(generations=6, progress=False)
        assert remote.batches == 6 and remote.bytes_received == 6 * 64 * 4 * 4  # only the 4 archive columns
    local = fb.search.MAPElites(lenet, encoding, batch_size=64, seed=3, classes=[0, 2, 5, 7]).run(
        generations=6, progress=False
    )
    assert torch.equal(res.images, local.images)
    assert torch.equal(res.confidence, local.confidence)


def test_a_killed_worker_is_restarted_and_its_slice_retried(
    cluster: Any, lenet: fb.models.TorchClassifier, tmp_path: Path
) -> None:
    enc = fb.encodings.DirectEncoding((1, 28, 28), mutation_rate=0.02, eta=1.0)
    ckpt = tmp_path / "run.pt"
    with RayEvaluator(FACTORY, enc, num_workers=2, threads=1) as remote:
        s = fb.search.MAPElites(lenet, enc, batch_size=32, seed=1, evaluator=remote)
        s.run(generations=3, progress=False, checkpoint=ckpt)
        os.kill(remote.worker_pids()[0], signal.SIGKILL)
        res = s.run(generations=6, progress=False, checkpoint=ckpt)  # restarted once, slice retried
        os.kill(remote.worker_pids()[0], signal.SIGKILL)  # no restart left: the retry fails too
        with pytest.raises(WorkerError, match="died"):
            s.run(generations=8, progress=False, checkpoint=ckpt)
    once = fb.search.MAPElites(lenet, enc, batch_size=32, seed=1).run(generations=6, progress=False)
    assert torch.equal(res.images, once.images)
    resumed = fb.search.MAPElites(lenet, enc, batch_size=32, seed=1)
    resumed.load_checkpoint(ckpt)  # the checkpoint on disk is still valid
    assert resumed.generation == 6  # the failed generation left no trace


def test_bad_factory_and_resources(cluster: Any) -> None:
    enc = fb.encodings.DirectEncoding((1, 28, 28))
    with pytest.raises(InvalidArgumentError, match="could not build a model on the Ray workers"):
        RayEvaluator("no_such_module_xyz:make", enc, num_workers=1)
    with pytest.raises(InvalidArgumentError, match="more than the cluster has"):
        RayEvaluator(FACTORY, enc, num_workers=8, num_cpus=1)
    with pytest.raises(InvalidArgumentError, match="num_workers"):
        RayEvaluator(FACTORY, enc, num_workers=0)
    with pytest.raises(InvalidTypeError, match="encoding must follow"):  # was blamed on the model factory
        RayEvaluator(FACTORY, "direct", num_workers=1)  # type: ignore[arg-type]
    remote = RayEvaluator(FACTORY, enc, num_workers=1, threads=1)
    # a search over another model than the replicas' reported the replicas' confidences as its own
    other = fb.models.TorchClassifier(fb.models.LeNet().eval(), input_shape=(1, 28, 28), num_classes=10)
    with pytest.raises(InvalidArgumentError, match="evaluator scores with another model"):
        fb.search.MAPElites(other, enc, evaluator=remote)
    fb.search.MAPElites(fb.models.lenet_mnist(), enc, evaluator=remote)  # the replicas' own model: accepted
    empty = enc.sample(2, torch.Generator().manual_seed(0))[:0]
    with pytest.raises(InvalidArgumentError, match="at least one genome"):
        remote(empty)
    remote.close()
    with pytest.raises(fb.distributed.EvaluatorClosedError, match="closed"):
        remote(enc.sample(2, torch.Generator().manual_seed(0)))
    remote.close()  # a second close does nothing


def test_replicas_with_different_weights_are_refused(cluster: Any, lenet: fb.models.TorchClassifier) -> None:
    """Only replica 0's weights were checked: a factory that builds other weights on each call (unseeded)
    had every other replica score its slice with another model, silently, at start and after a restart."""

    def unseeded() -> fb.models.TorchClassifier:
        torch.seed()  # each call (each replica, each restart) its own random weights
        return fb.models.TorchClassifier(fb.models.LeNet().eval(), input_shape=(1, 28, 28), num_classes=10)

    enc = fb.encodings.DirectEncoding((1, 28, 28))
    with pytest.raises(InvalidArgumentError, match=r"built replicas with different weights .* seed the factory"):
        RayEvaluator(unseeded, enc, num_workers=2, threads=1)
    remote = RayEvaluator(unseeded, enc, num_workers=1, threads=1)  # one replica: nothing to compare yet
    genomes = enc.sample(4, torch.Generator().manual_seed(0))
    remote(genomes)
    os.kill(remote.worker_pids()[0], signal.SIGKILL)  # Ray restarts it, and the factory builds other weights
    with pytest.raises(InvalidArgumentError, match=r"other weights when Ray restarted worker 0 .* seed the factory"):
        remote(genomes)
    with pytest.raises(fb.distributed.EvaluatorClosedError):
        remote(genomes)  # closed: it would score with the restarted replica's model


def test_default_num_gpus_puts_every_replica_on_a_gpu(cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default gave each replica a whole GPU only when the cluster had one per replica: with 2 replicas
    on a 1-GPU machine it was 0, and every replica scored on the CPU although the docstring said 1."""
    # a cluster that says it has one GPU (this one has none: the replicas are stopped before they start)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0, "GPU": 1.0})
    monkeypatch.setattr(RayEvaluator, "_check_started", lambda self: None)
    remote = RayEvaluator(FACTORY, fb.encodings.DirectEncoding((1, 28, 28)), num_workers=2)
    remote.close()
    assert remote.num_gpus == 0.5
    from foolbench.distributed._ray import default_num_gpus

    assert default_num_gpus(0, 2) == 0.0
    assert default_num_gpus(1, 1) == default_num_gpus(4, 2) == 1.0
    assert default_num_gpus(1, 3) == 0.3333  # rounded down: all three fit on the one GPU
    assert default_num_gpus(2, 3) == 0.5  # 2/3 each would leave the third replica no room on either GPU
    assert default_num_gpus(0.5, 2) == 0.25


def test_worker_errors_name_the_exception_and_its_first_line(cluster: Any) -> None:
    """The message kept the last line of Ray's text: a multi-line error lost its type and first line."""

    def broken() -> fb.models.TorchClassifier:
        raise ValueError("the weights file is truncated\nexpected 431080 bytes")

    enc = fb.encodings.DirectEncoding((1, 28, 28))
    with pytest.raises(InvalidArgumentError, match=r"Ray workers: ValueError: the weights file is truncated$"):
        RayEvaluator(broken, enc, num_workers=1)  # the actor's creation task: only its text comes back
    from foolbench.distributed._ray import _first_line

    def fails(x: int) -> int:
        raise ValueError(f"no cell {x}\nsecond line")

    with pytest.raises(ray.exceptions.RayTaskError) as caught:
        ray.get(ray.remote(max_retries=0)(fails).remote(3))
    assert _first_line(caught.value) == "ValueError: no cell 3"
    assert _first_line(RuntimeError("")) == "RuntimeError"


def test_a_search_refuses_replicas_with_other_preprocessing_defense_or_encoding(
    cluster: Any, lenet: fb.models.TorchClassifier
) -> None:
    """Only the weights' digest was compared: replicas scoring behind other preprocessing (std=0.5), a defense,
    or with another encoding of the same image shape were accepted, and their scores reported as the search's."""
    enc = fb.encodings.CPPNEncoding((1, 28, 28))
    with RayEvaluator(lambda: fb.models.lenet_mnist().replace(std=0.5), enc, num_workers=1, threads=1) as remote:
        assert remote.model_digest == fb.models.weights_digest(lenet.network())  # same weights
        with pytest.raises(InvalidArgumentError, match=r"evaluator scores with other preprocessing or defense"):
            fb.search.MAPElites(lenet, enc, evaluator=remote)
        fb.search.MAPElites(lenet.replace(std=0.5), enc, evaluator=remote)  # the replicas' own model: accepted
    defended = fb.defenses.BitDepthReduction(fb.models.lenet_mnist(), bits=1)
    with RayEvaluator(lambda: fb.defenses.BitDepthReduction(fb.models.lenet_mnist(), bits=1), enc,
                      num_workers=1, threads=1) as remote:  # fmt: skip
        with pytest.raises(InvalidArgumentError, match="evaluator scores with other preprocessing or defense"):
            fb.search.MAPElites(lenet, enc, evaluator=remote)
        fb.search.MAPElites(defended, enc, evaluator=remote)
    other = fb.encodings.CPPNEncoding((1, 28, 28), activations=("linear", "gaussian", "sigmoid", "sine"))
    with RayEvaluator(FACTORY, other, num_workers=1, threads=1) as remote:
        with pytest.raises(InvalidArgumentError, match=r"evaluator scores with another encoding .*encoding_digest"):
            fb.search.MAPElites(lenet, enc, evaluator=remote)
        assert isinstance(remote.scoring_digest, str) and isinstance(remote.architecture_digest, str)
        fb.search.MAPElites(lenet, other, evaluator=remote)


def test_a_search_refuses_an_evaluator_of_another_architecture() -> None:
    """The architecture digest (a ReLU and a Sigmoid have no weights) is compared like the weights; an
    evaluator without the digests (a user's own) is still accepted."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(16, 3)

    def clf(act: torch.nn.Module) -> fb.models.TorchClassifier:
        net = torch.nn.Sequential(torch.nn.Flatten(), linear, act).eval()
        return fb.models.TorchClassifier(net, input_shape=(1, 4, 4), num_classes=3)

    enc = fb.encodings.DirectEncoding((1, 4, 4))
    relu, sigmoid = clf(torch.nn.ReLU()), clf(torch.nn.Sigmoid())
    from foolbench import _checkpoint
    from foolbench.models._classifier import architecture_digest

    class Remote:  # what a RayEvaluator over `sigmoid` reports, without starting replicas
        def __init__(self) -> None:
            self.local = fb.search.LocalEvaluator(sigmoid, enc)
            self.model_digest = fb.models.weights_digest(sigmoid.network())
            self.scoring_digest = _checkpoint.digest(sigmoid.identity())[:16]
            self.architecture_digest = architecture_digest(sigmoid)
            self.encoding_digest = _checkpoint.digest(enc.config())[:16]

        def __call__(self, genomes: Any, *, columns: torch.Tensor | None = None) -> torch.Tensor:
            return self.local(genomes, columns=columns)

    with pytest.raises(InvalidArgumentError, match="evaluator scores with another architecture"):
        fb.search.MAPElites(relu, enc, evaluator=Remote())
    fb.search.MAPElites(sigmoid, enc, evaluator=Remote())
    fb.search.MAPElites(relu, enc, evaluator=fb.search.LocalEvaluator(sigmoid, enc))  # no digests: a user's own


def test_connect_names_a_bad_num_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """connect("local", num_cpus=-1) blamed the cluster ("cannot reach the Ray cluster")."""
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: pytest.fail("ray.init must not see a bad num_cpus"))
    with pytest.raises(InvalidArgumentError, match=r"num_cpus must be an int >= 0, got -1"):
        fb.distributed.connect("local", num_cpus=-1)
    with pytest.raises(InvalidTypeError, match="num_cpus"):
        fb.distributed.connect("local", num_cpus=1.5)  # type: ignore[arg-type]


def test_gpu_resources_ray_cannot_place_are_refused(cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """num_gpus=1.5 (Ray takes only whole GPUs above one) and fractional shares that cannot pack onto the GPUs
    (3 replicas of 0.6 on 2 GPUs) were accepted: the replicas then waited 300 s, blamed on the model factory."""
    enc = fb.encodings.DirectEncoding((1, 28, 28))
    with pytest.raises(InvalidArgumentError, match=r"num_gpus above 1 must be a whole number .* got 1.5"):
        fb.distributed.RayExecutor(num_gpus=1.5)
    with pytest.raises(InvalidArgumentError, match=r"num_gpus above 1 must be a whole number"):
        fb.distributed.RayMap(num_gpus=2.5)
    with pytest.raises(InvalidArgumentError, match=r"num_gpus above 1 must be a whole number"):
        RayEvaluator(FACTORY, enc, num_workers=1, num_cpus=0, num_gpus=1.5)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0, "GPU": 2.0})  # this one has none
    monkeypatch.setattr(RayEvaluator, "_check_started", lambda self: pytest.fail("must be refused before"))
    with pytest.raises(InvalidArgumentError, match=r"num_workers=3 .*num_gpus=0.6 .* 2 GPUs.* num_gpus=0.5"):
        RayEvaluator(FACTORY, enc, num_workers=3, num_cpus=0, num_gpus=0.6)
    monkeypatch.undo()
    # replicas Ray cannot place (a GPU this cluster lacks) time out with a message naming the resources
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0, "GPU": 1.0})
    get = ray.get
    monkeypatch.setattr(ray, "get", lambda refs, timeout=None: get(refs, timeout=None if timeout is None else 1))
    with pytest.raises(
        InvalidArgumentError, match=r"replicas \(num_workers=1, num_cpus=0, num_gpus=1 each\) were not placed and built"
    ):
        RayEvaluator(FACTORY, enc, num_workers=1, num_cpus=0, num_gpus=1)
