"""One table of bad inputs across the public API and the command line.

Each row must raise a documented foolbench exception whose message names the argument, what was
expected and what was received; the command line must print one line and exit with status 2.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import foolbench as fb
from foolbench.cli import main
from foolbench.errors import (
    CheckpointError,
    ConfigError,
    FoolbenchError,
    InvalidArgumentError,
    InvalidTypeError,
    ModelOutputError,
)

LENET = fb.models.lenet_mnist()
X = torch.rand(4, 1, 28, 28)
Y = torch.tensor([0, 1, 2, 3])
DIRECT = fb.encodings.DirectEncoding((1, 28, 28))
CPPN = fb.encodings.CPPNEncoding((1, 28, 28))


def linear(out: int = 10) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, out)).eval()


class NaNNet(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 10), float("nan"))


def clf_of(module: torch.nn.Module) -> fb.models.TorchClassifier:
    return fb.models.TorchClassifier(module, input_shape=(1, 28, 28), num_classes=10)


def nan_cppn() -> Any:
    g = CPPN.sample(2, torch.Generator().manual_seed(0))
    g.weight[0, 4, 0] = float("nan")
    return CPPN.render(g)


CASES: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    # models: construction
    (
        "module type",
        lambda: fb.models.TorchClassifier("net", input_shape=(1, 28, 28), num_classes=10),
        InvalidTypeError,
        r"module must be a torch.nn.Module, got str",
    ),  # type: ignore[arg-type]
    (
        "input_shape rank",
        lambda: fb.models.TorchClassifier(linear(), input_shape=(28, 28), num_classes=10),
        InvalidArgumentError,
        r"input_shape must be a \(channels, height, width\) tuple, got \(28, 28\)",
    ),
    (
        "num_classes < 2",
        lambda: fb.models.TorchClassifier(linear(), input_shape=(1, 28, 28), num_classes=1),
        InvalidArgumentError,
        r"num_classes must be an int >= 2, got 1",
    ),
    (
        "bounds order",
        lambda: fb.models.TorchClassifier(linear(), input_shape=(1, 28, 28), num_classes=10, bounds=(1, 0)),
        InvalidArgumentError,
        r"bounds must satisfy lower < upper, got \(1, 0\)",
    ),
    (
        "std zero",
        lambda: fb.models.TorchClassifier(linear(), input_shape=(1, 28, 28), num_classes=10, std=0.0),
        InvalidArgumentError,
        r"std must be positive, got 0.0",
    ),
    (
        "mean length",
        lambda: fb.models.TorchClassifier(linear(), input_shape=(1, 28, 28), num_classes=10, mean=[0.1, 0.2]),
        InvalidArgumentError,
        r"mean must have 1 or 1 values .* got 2",
    ),
    (
        "class_names length",
        lambda: fb.models.TorchClassifier(linear(), input_shape=(1, 28, 28), num_classes=10, class_names=["a"]),
        InvalidArgumentError,
        r"class_names must hold num_classes=10 names, got 1",
    ),
    (
        "zoo name",
        lambda: fb.models.load_model("resnet50"),
        InvalidArgumentError,
        r"model must be one of 'lenet-mnist', 'efficientnet-lite0', 'lenet-mnist-noise-trained'; got 'resnet50'",
    ),
    (
        "mnist split",
        lambda: fb.models.mnist_digits("validation"),
        InvalidArgumentError,
        r"split must be one of 'train', 'test', 'all'; got 'validation'",
    ),
    # models: inputs and outputs
    (
        "image size",
        lambda: LENET.probs(torch.rand(2, 1, 28, 27)),
        InvalidArgumentError,
        r"x must have shape \(B, 1, 28, 28\), got \(2, 1, 28, 27\)",
    ),
    (
        "image rank",
        lambda: LENET.probs(torch.rand(1, 28, 28)),
        InvalidArgumentError,
        r"x must have shape .* \(4 dimensions\), got \(1, 28, 28\)",
    ),
    (
        "image NaN",
        lambda: LENET.probs(torch.full((1, 1, 28, 28), float("nan"))),
        InvalidArgumentError,
        r"x must be finite, got values containing NaN",
    ),
    (
        "image inf",
        lambda: LENET.probs(torch.full((1, 1, 28, 28), float("inf"))),
        InvalidArgumentError,
        r"x must be finite",
    ),
    (
        "image bounds",
        lambda: LENET.probs(torch.full((1, 1, 28, 28), 2.0)),
        InvalidArgumentError,
        r"x must lie inside the classifier's bounds \[0, 1\], got values in \[2, 2\]",
    ),
    (
        "image numpy",
        lambda: LENET.probs(np.zeros((1, 1, 28, 28))),
        InvalidTypeError,
        r"x must be a torch.Tensor of shape \(B, C, H, W\), got ndarray",
    ),
    (
        "image dtype",
        lambda: LENET.probs(torch.zeros(1, 1, 28, 28, dtype=torch.uint8)),
        InvalidTypeError,
        r"x must have a floating dtype .* got torch.uint8",
    ),
    (
        "empty batch",
        lambda: LENET.probs(torch.zeros(0, 1, 28, 28)),
        InvalidArgumentError,
        r"x must hold at least one image, got an empty batch \(0, 1, 28, 28\)",
    ),
    (
        "output shape",
        lambda: clf_of(linear(7)),  # found at wrap time by one dummy forward
        ModelOutputError,
        r"logits of shape \(B, num_classes\) = \(1, 10\) for one input of input_shape=\(1, 28, 28\), got \(1, 7\)",
    ),
    ("output NaN", lambda: clf_of(NaNNet().eval()).probs(X), ModelOutputError, r"NaN or infinite logits"),
    # encodings
    (
        "direct image_shape",
        lambda: fb.encodings.DirectEncoding((1, 28)),
        InvalidArgumentError,
        r"image_shape must be a \(channels, height, width\) tuple, got \(1, 28\)",
    ),
    (
        "mutation_rate",
        lambda: fb.encodings.DirectEncoding((1, 28, 28), mutation_rate=0.0),
        InvalidArgumentError,
        r"mutation_rate must be a finite number in \(0, 1\], got 0.0",
    ),
    (
        "eta",
        lambda: fb.encodings.DirectEncoding((1, 28, 28), eta=float("nan")),
        InvalidArgumentError,
        r"eta must be a finite number in \(0, inf\), got nan",
    ),
    ("sample n", lambda: DIRECT.sample(0, torch.Generator()), InvalidArgumentError, r"n must be an int >= 1, got 0"),
    (
        "cppn activation",
        lambda: fb.encodings.CPPNEncoding((1, 8, 8), activations=("sine", "relu6")),
        InvalidArgumentError,
        r"activations has unknown name\(s\) \['relu6'\]; expected names from",
    ),
    (
        "cppn capacity",
        lambda: fb.encodings.CPPNEncoding((3, 8, 8), max_nodes=7),
        InvalidArgumentError,
        r"max_nodes must be at least 8 for 3 output\(s\) .* got 7",
    ),
    ("cppn NaN weights", nan_cppn, InvalidArgumentError, r"genomes.weight must be finite, got NaN or inf"),
    ("cppn foreign genomes", lambda: CPPN.render(X), InvalidTypeError, r"genomes must be CPPNGenomes .* got Tensor"),
    # search
    (
        "classes range",
        lambda: fb.search.MAPElites(LENET, DIRECT, classes=[10]),
        InvalidArgumentError,
        r"classes must hold class indices in \[0, 9\], got 10",
    ),
    (
        "classes empty",
        lambda: fb.search.MAPElites(LENET, DIRECT, classes=[]),
        InvalidArgumentError,
        r"classes must name at least one class, got an empty sequence",
    ),
    (
        "classes repeated",
        lambda: fb.search.MAPElites(LENET, DIRECT, classes=[1, 1]),
        InvalidArgumentError,
        r"classes must not repeat a class, got \[1, 1\]",
    ),
    (
        "batch_size",
        lambda: fb.search.MAPElites(LENET, DIRECT, batch_size=0),
        InvalidArgumentError,
        r"batch_size must be an int >= 1, got 0",
    ),
    (
        "encoding shape",
        lambda: fb.search.MAPElites(LENET, fb.encodings.DirectEncoding((3, 28, 28))),
        InvalidArgumentError,
        r"image_shape.*\(3, 28, 28\).*\(1, 28, 28\)",
    ),
    (
        "not a classifier",
        lambda: fb.search.MAPElites(torch.nn.Linear(2, 2), DIRECT),
        InvalidTypeError,
        r"classifier must follow foolbench.models.Classifier \(missing 'input_shape', 'num_classes', 'bounds'\)",
    ),  # type: ignore[arg-type]
    (
        "no budget",
        lambda: fb.search.MAPElites(LENET, DIRECT).run(progress=False),
        InvalidArgumentError,
        r"run\(\) needs a budget",
    ),
    (
        "target_confidence",
        lambda: fb.search.MAPElites(LENET, DIRECT).run(generations=1, target_confidence=1.5, progress=False),
        InvalidArgumentError,
        r"target_confidence must be a finite number in \(0, 1\], got 1.5",
    ),
    (
        "max_seconds",
        lambda: fb.search.MAPElites(LENET, DIRECT).run(max_seconds=-1.0, progress=False),
        InvalidArgumentError,
        r"max_seconds must be a finite number in \(0, inf\), got -1.0",
    ),
    (
        "pgd eps",
        lambda: fb.search.PGD(eps=-0.1),
        InvalidArgumentError,
        r"eps must be a finite number in \[0, inf\), got -0.1",
    ),
    (
        "pgd norm",
        lambda: fb.search.PGD(eps=0.1, norm="1"),
        InvalidArgumentError,
        r"norm must be one of 'inf', '2'; got '1'",
    ),
    (
        "attack labels",
        lambda: fb.search.PGD(eps=0.1)(LENET, X, torch.tensor([0, 1, 2, 11])),
        InvalidArgumentError,
        r"labels must be class indices in \[0, 9\], got values in \[0, 11\]",
    ),
    (
        "attack label count",
        lambda: fb.search.FGSM(eps=0.1)(LENET, X, torch.tensor([0, 1])),
        InvalidArgumentError,
        r"labels must have shape \(4,\) to match the images, got \(2,\)",
    ),
    ("attack target", lambda: fb.search.PGD(eps=0.1)(LENET, X, Y, target=Y), InvalidArgumentError, r"target"),
    (
        "fgsm eps NaN",
        lambda: fb.search.FGSM(eps=float("nan")),
        InvalidArgumentError,
        r"eps must be a finite number in \[0, inf\), got nan",
    ),
    ("deepfool steps", lambda: fb.search.DeepFool(steps=0), InvalidArgumentError, r"steps must be an int >= 1, got 0"),
    (
        "uap method",
        lambda: fb.search.UniversalPerturbation(eps=0.3, method="adam"),
        InvalidArgumentError,
        r"method must be one of 'deepfool', 'sgd'; got 'adam'",
    ),
    (
        "perturbation shape",
        lambda: fb.search.fooling_rate(LENET, X, torch.zeros(3, 28, 28)),
        InvalidArgumentError,
        r"perturbation",
    ),
    (
        "ascent steps",
        lambda: fb.search.GradientAscent(LENET, steps=0),
        InvalidArgumentError,
        r"steps must be an int >= 1, got 0",
    ),
    (
        "ascent classes",
        lambda: fb.search.GradientAscent(LENET, steps=1).run(classes=[12]),
        InvalidArgumentError,
        r"classes must hold class indices in \[0, 9\], got 12",
    ),
    # defenses
    (
        "ensemble members",
        lambda: (
            fb.defenses.Ensemble([LENET, clf_of(linear())]).members
            and fb.defenses.Ensemble(
                [LENET, fb.models.TorchClassifier(linear(5), input_shape=(1, 28, 28), num_classes=5)]
            )
        ),
        InvalidArgumentError,
        r"classifiers\[1\] has num_classes=5, but classifiers\[0\] has num_classes=10",
    ),
    (
        "gaussian sigma",
        lambda: fb.defenses.GaussianSmoothing(LENET, 0.0),
        InvalidArgumentError,
        r"sigma must be a finite number in \(0, inf\), got 0.0",
    ),
    (
        "median size even",
        lambda: fb.defenses.MedianSmoothing(LENET, 4),
        InvalidArgumentError,
        r"size must be odd .* got 4",
    ),
    (
        "bit depth",
        lambda: fb.defenses.BitDepthReduction(LENET, 9),
        InvalidArgumentError,
        r"bits must be an int in 1..8, got 9",
    ),
    (
        "detector threshold",
        lambda: fb.defenses.FeatureSqueezingDetector(LENET, [fb.defenses.median(3)], threshold=2.5),
        InvalidArgumentError,
        r"threshold must be a finite number in \[0, 2\], got 2.5",
    ),
    (
        "retraining rounds",
        lambda: fb.defenses.FoolingClassRetraining(LENET, fb.models.LeNet, X, Y, X, Y, rounds=0),
        InvalidArgumentError,
        r"rounds must be an int >= 1, got 0",
    ),
    (
        "retraining data",
        lambda: fb.defenses.FoolingClassRetraining(LENET, fb.models.LeNet, X[:0], Y[:0], X, Y),
        InvalidArgumentError,
        r"train_images must hold at least one image",
    ),
    # files and configs
    (
        "suite file",
        lambda: fb.bench.load_config("no/such/suite.toml"),
        FileNotFoundError,
        r"suite config not found: 'no/such/suite.toml' \(built-in suites: \['quick', 'paper', 'paper-imagenet'\]\)",
    ),
    (
        "suite kind",
        lambda: fb.bench.parse_config({"models": [{"zoo": "lenet-mnist"}], "methods": [{"kind": "cw"}]}),
        ConfigError,
        r"methods\[0\] has unknown kind 'cw'; valid kinds",
    ),
    # a truthy string was taken as fresh=True: every checkpoint of the folder deleted
    (
        "run_suite fresh",
        lambda: fb.bench.run_suite("quick", out="never-written", fresh="no"),
        InvalidArgumentError,
        r"fresh must be True or False, got 'no'",
    ),
    (
        "run_evolution fresh",
        lambda: fb.search.run_evolution("never-written", fresh="false"),
        InvalidArgumentError,
        r"fresh must be True or False, got 'false'",
    ),
    (
        "run_ascent progress",
        lambda: fb.search.run_ascent("never-written", progress="off"),
        InvalidArgumentError,
        r"progress must be True or False, got 'off'",
    ),
    (
        "run_uap fresh",
        lambda: fb.search.run_uap("never-written", fresh=1),
        InvalidArgumentError,
        r"fresh must be True or False, got 1",
    ),
    # an int past float's range raised a bare OverflowError
    (
        "huge int eps",
        lambda: fb.search.PGD(eps=10**400),
        InvalidArgumentError,
        r"eps must be a finite number in \[0, inf\), got an integer of 401 digits",
    ),
    (
        "huge int max_seconds",
        lambda: fb.search.Budget(max_seconds=10**400),
        InvalidArgumentError,
        r"max_seconds must be a finite number in \(0, inf\), got an integer of 401 digits",
    ),
]


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize(("call", "exc", "match"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(call: Callable[[], Any], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match) as info:
        call()
    if exc is not FileNotFoundError:
        assert isinstance(info.value, FoolbenchError)


def test_checkpoint_that_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ckpt.pt").mkdir()
    with pytest.raises(CheckpointError, match=r"ckpt.pt' is not a regular file .* expected a file"):
        fb.search.MAPElites(LENET, DIRECT).run(generations=1, progress=False, checkpoint=tmp_path / "ckpt.pt")
    # the CLI said "--fresh starts over", and --fresh then failed with a bare "Is a directory"
    folder = tmp_path / "seed=0" / "ckpt.pt"  # a flag's name inside a path stays as it is
    folder.mkdir(parents=True)
    for fresh in ([], ["--fresh"]):
        argv = ["evolve", "--checkpoint", str(folder), "--generations", "1", "--out", str(tmp_path / "o")]
        assert main([*argv, *fresh]) == 2
        err = capsys.readouterr().err
        assert "is not a regular file (a directory?); give a file path" in err and "fresh" not in err, err
        assert f"{str(folder)!r}" in err


def test_cli_errors_name_flags_inside_the_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "o")
    assert main(["evolve", "--max-evaluations", "128", "--batch-size", "64", "--out", out, "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["evolve", "--max-evaluations", "64", "--batch-size", "64", "--out", out, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "(--max-evaluations 64)" in err and err.rstrip().endswith("(start over with --fresh)"), err


CLI_CASES = [
    (["evolve", "--classes", "3,x"], "--classes must hold class indices or class names ('0', '1',"),
    (["evolve", "--classes", ","], "--classes must name at least one class index or name, got ','"),
    (["evolve", "--max-evaluations", "-5"], "--max-evaluations must be an int >= 1, got -5"),
    (["evolve", "--encoding", "cppn", "--max-connections", "2"], "--max-connections must be at least 4"),
    (["evolve", "--batch-size", "0"], "--batch-size must be an int >= 1, got 0"),
    (["evolve", "--model", "vgg"], "--model must be one of"),
    (["ascend", "--steps", "0"], "--steps must be an int >= 1, got 0"),
    (["uap", "--eps", "-1"], "--eps must be a finite number"),
    (["uap", "--norm", "1"], "invalid choice: '1'"),
    (["bench", "--config", "missing.toml"], "suite config not found"),
    (["evolve", "--max-evaluations", "ten"], "invalid int value: 'ten'"),
    (
        ["evolve", "--seed", str(2**64)],
        "argument --seed: seed must be an int in [0, 2**64 - 1], got 18446744073709551616",
    ),
    (["ascend", "--seed", "-1"], "argument --seed: seed must be an int >= 0, got -1"),
    (["uap", "--fit", "0"], "--fit must be an int >= 1, got 0"),
    (["uap", "--held-out", "0"], "--held-out must be an int >= 1, got 0"),
    (["evolve", "--device", "tpu9"], "argument --device: device must be a torch device such as 'cpu'"),
    (["evolve", "--threads", "-1"], "argument --threads: threads must be an int >= 0, got -1"),
    (["evolve", "--image-size", "64"], "--image-size applies to ImageNet models only"),
    (["evolve", "--method", "random"], "invalid choice: 'random'"),
    (["evolve", "--strength", "0"], "--strength must be"),
    (["evolve", "--method", "random-search", "--strength", "2"], "--strength applies to the map-elites method only"),
    (["evolve", "--verify"], "--verify needs a reduced precision (bf16 or fp16)"),
    (["evolve", "--islands", "0"], "--islands must be an int >= 1, got 0"),
    (["evolve", "--method", "random-search", "--islands", "2"], "--islands applies to the map-elites method only"),
    (["evolve", "--parents-confidence", "0"], "--parents-confidence must be"),
    (["evolve", "--parents-confidence", "1.5"], "--parents-confidence must be"),
    (
        ["evolve", "--method", "random-search", "--parents-confidence", "0.99"],
        "--parents-confidence applies to the map-elites method only",
    ),
    (["evolve", "--precision", "fp64"], "invalid choice: 'fp64'"),
    (["evolve", "--encoding", "cppn", "--mutation-rate", "0.5"], "--mutation-rate applies to the direct encoding only"),
    (["evolve", "--max-nodes", "40"], "--max-nodes applies to the cppn encoding only"),
    (["evolve", "--max-connections", "64"], "--max-connections applies to the cppn encoding only"),
    (["bench", "--suite", "quick", "--ray-cpus", "2"], "--ray-cpus applies with --ray only"),
    (["bench", "--suite", "quick", "--ray-gpus", "1"], "--ray-gpus applies with --ray only"),
    (["bench", "--suite", "quick", "--ray", "--ray-cpus", "-1"], "--ray-cpus must be a finite number in [0, inf)"),
    (["bench", "--suite", "quick", "--ray", "--ray-gpus", "nan"], "--ray-gpus must be a finite number in [0, inf)"),
    # settings that changed nothing, or were cut to the shipped digits without a word
    (["ascend", "--blur-sigma", "2"], "--blur-sigma 2.0 has no effect with --blur-every 0: blurring is off"),
    (["uap", "--fit", "9000"], "--fit must be at most 4,000 (the shipped train digits), got 9,000"),
    (["uap", "--held-out", "5000"], "--held-out must be at most 1,000 (the shipped test digits), got 5,000"),
]
if not torch.cuda.is_available():
    CLI_CASES.append((["evolve", "--device", "cuda"], "argument --device: device is 'cuda' but "))
    CLI_CASES.append((["bench", "--suite", "quick", "--device", "cuda:0"], "argument --device: device is 'cuda:0'"))


@pytest.mark.parametrize(("argv", "match"), CLI_CASES, ids=[" ".join(a) for a, _ in CLI_CASES])
def test_cli_bad_input_prints_one_line(
    argv: list[str], match: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("foolbench: error: ") and err.count("\n") == 1, err
    assert match in err and "Traceback" not in err


def test_cli_ray_resources_beyond_the_cluster_name_the_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bench --ray --ray-cpus 8` on a smaller cluster said `num_cpus=8`, a name the command line does not take."""
    from foolbench.distributed import _executor

    class Cluster:
        def cluster_resources(self) -> dict[str, float]:
            return {"CPU": 2.0}

    monkeypatch.setattr(_executor, "connect", lambda address: Cluster())
    argv = ["bench", "--suite", "quick", "--ray", "--ray-cpus", "8", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "asks for --ray-cpus 8, --ray-gpus 0; the cluster has 2 CPUs" in err, err


def _file(tmp: Path) -> Path:
    (tmp / "a-file").write_text("x")
    return tmp / "a-file"


def _summary_is_a_folder(tmp: Path) -> Path:
    (tmp / "out" / "summary.json").mkdir(parents=True)
    return tmp / "out"


# (argv, out folder made from tmp_path, expected text): failures that involve the output folder or memory
CLI_OUT_CASES: list[tuple[list[str], Callable[[Path], Any], str]] = [
    (["evolve", "--generations", "1"], lambda tmp: "", "--out must be a folder path, got ''"),
    (["evolve", "--generations", "1"], lambda tmp: " ", "--out must be a folder path, got ' '"),
    (["ascend", "--steps", "1"], _file, "it is a file"),
    (["uap", "--fit", "10"], lambda tmp: _file(tmp) / "sub" / "dir", "a-file', which is a file"),
    (["evolve", "--generations", "1"], lambda tmp: "/dev/full", "--out must be a folder, got '/dev/full'"),
    (["evolve", "--generations", "1"], _summary_is_a_folder, "a folder is in the way of an output file: "),
    (
        ["evolve", "--batch-size", str(10**11), "--max-evaluations", str(10**12), "--generations", "1"],
        lambda tmp: tmp / "big",
        "out of memory; lower --batch-size (got 100000000000)",
    ),
]


@pytest.mark.parametrize(("argv", "out", "match"), CLI_OUT_CASES, ids=[m for _, _, m in CLI_OUT_CASES])
def test_cli_output_problems_print_one_line(
    argv: list[str], out: Callable[[Path], Any], match: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--no-progress" if argv[0] == "evolve" else "--seed=0", "--out", str(out(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("foolbench: error: ") and err.count("\n") == 1, err
    assert match in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("code", "said"),
    [
        (errno.ENOSPC, "no space left on the device"),
        (errno.EROFS, "the file system is read-only"),
        (errno.EACCES, "Permission denied"),
    ],
)
def test_cli_unwritable_output_prints_one_line(
    code: int, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(fd: int) -> None:  # the first write of the run fails as on a full / read-only / foreign disk
        raise OSError(code, os.strerror(code), str(tmp_path / "out"))

    monkeypatch.setattr("foolbench._io.os.fsync", fail)
    assert main(["ascend", "--steps", "1", "--classes", "1", "--no-progress", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == f"foolbench: error: {said}: {tmp_path / 'out'}\n"
    assert not list((tmp_path / "out").glob(".*.tmp"))  # the temporary file is removed


def test_cli_seed_mismatch_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["evolve", "--generations", "1", "--classes", "1", "--no-progress", "--out", str(tmp_path)]
    assert main([*args, "--seed", "1"]) == 0
    capsys.readouterr()
    assert main([*args, "--seed", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("foolbench: error: ") and err.count("\n") == 1, err
    assert "another configuration" in err and "seed: saved 1, current 2" in err and "--fresh" in err


def test_private_checks_take_tensors_and_empty_lists_and_refuse_odd_digits(tmp_path: Path) -> None:
    """class_indices refused a tensor (class_list took one) and turned "²" into a bare ValueError; labels
    refused an empty list (as_tensor made it float32) and let a ragged one raise a bare ValueError;
    save_grid of an empty batch failed inside torch."""
    from foolbench import _checks, _io

    names = [str(i) for i in range(10)]
    assert _checks.class_indices("classes", torch.tensor([3, 1]), class_names=names) == [3, 1]
    assert _checks.class_indices("classes", np.array([2]), class_names=names) == [2]
    with pytest.raises(InvalidArgumentError, match="classes must hold class indices or class names .* '²'"):
        _checks.class_indices("classes", ["²"], class_names=names)
    assert _checks.labels("y", [], batch=0, num_classes=10).dtype == torch.long
    with pytest.raises(InvalidArgumentError, match="y must be a flat list of class indices"):
        _checks.labels("y", [[1], [2, 3]], batch=2, num_classes=10)
    with pytest.raises(InvalidArgumentError, match="images must hold at least one image"):
        _io.save_grid(torch.zeros(0, 1, 4, 4), [], tmp_path / "grid.png")


def test_evaluator_columns_are_checked_naming_them() -> None:
    clf = fb.models.lenet_mnist()
    enc = fb.encodings.DirectEncoding((1, 28, 28))
    ev = fb.search.LocalEvaluator(clf, enc)
    g = enc.sample(2, torch.Generator().manual_seed(0))
    assert ev(g, columns=torch.tensor([3, 9])).shape == (2, 2)
    for bad, match in [
        (torch.tensor([10]), r"columns must hold class indices in \[0, 9\], got values in \[10, 10\]"),
        (torch.tensor([-1, 2]), r"columns must hold class indices in \[0, 9\], got values in \[-1, 2\]"),
        (torch.tensor([1.0]), "columns must be a 1-D integer tensor of class indices, got torch.float32"),
        (torch.tensor([[1, 2]]), r"columns must be a 1-D integer tensor .* shape \(1, 2\)"),
        ([1, 2], "columns must be a 1-D integer tensor of class indices, got list"),
        (torch.tensor([1], dtype=torch.int16), "columns must be a 1-D int64 or int32 tensor .* got torch.int16"),
    ]:
        with pytest.raises(InvalidArgumentError, match=match):
            ev(g, columns=bad)


def test_a_long_file_name_is_written_atomically(tmp_path: Path) -> None:
    from foolbench import _io

    target = tmp_path / ("a" * 248 + ".json")  # 253 characters: the temporary name once passed 255
    _io.atomic_write_bytes(target, b"{}")
    assert target.read_bytes() == b"{}" and not list(tmp_path.glob(".*.tmp"))


def test_a_zero_dimensional_class_array_is_named() -> None:
    import numpy as np

    from foolbench.search._recipes import _json_settings

    for classes in (torch.tensor(3), np.array(3)):
        with pytest.raises(InvalidTypeError, match="classes must be a list of class indices or names"):
            _json_settings({"classes": classes})
    assert fb.search.LocalEvaluator(fb.models.lenet_mnist(), fb.encodings.DirectEncoding((1, 28, 28)))(
        torch.rand(1, 1, 28, 28), columns=torch.tensor([2], dtype=torch.int32)
    ).shape == (1, 1)


def test_a_ray_cell_device_index_past_the_tasks_gpus_is_refused() -> None:
    from foolbench.distributed._executor import check_cell_device

    check_cell_device("cuda:0", 1)
    check_cell_device("cuda:1", 2)
    with pytest.raises(
        InvalidArgumentError, match=r"device 'cuda:1': a Ray task with num_gpus=1 sees its GPU as cuda:0"
    ):
        check_cell_device("cuda:1", 1)
    with pytest.raises(InvalidArgumentError, match="sees its GPU as cuda:0"):
        check_cell_device("cuda:1", 0.5)


def test_one_nan_pixel_does_not_change_the_scale_of_a_grid(tmp_path: Path) -> None:
    from PIL import Image

    from foolbench import _io

    ramp = torch.linspace(0, 255, 16).view(1, 1, 4, 4).repeat(2, 1, 1, 1)  # 0-255 images
    holed = ramp.clone()
    holed[1, 0, 0, 0] = float("nan")
    _io.save_grid(ramp, ["a", "b"], tmp_path / "clean.png")
    _io.save_grid(holed, ["a", "b"], tmp_path / "holed.png")

    def pixels(name: str) -> torch.Tensor:
        with Image.open(tmp_path / name) as im:
            return torch.from_numpy(np.array(im.convert("RGB"))).reshape(-1, 3)

    clean, with_nan = pixels("clean.png"), pixels("holed.png")
    assert int((clean != with_nan).any(dim=1).sum()) < clean.shape[0] // 20  # only the NaN pixel's cell differs
