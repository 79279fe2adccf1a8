from __future__ import annotations

import functools
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import foolbench as fb
from foolbench import _io
from foolbench.cli import main


def test_demo_writes_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--classes", "8,2", "--no-progress"]) == 0
    assert "2/2 classes at >= 99.99%" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["schema"] == "foolbench.summary/1" and summary["command"] == "demo"
    assert summary["results"]["fooled_at_0.9999"] == 2 and summary["settings"]["classes"] == ["8", "2"]
    assert (out / "images.png").is_file() and (out / "report.md").is_file()
    assert (
        (out / "report.md")
        .read_text()
        .startswith("# foolbench demo: evolved fooling images for lenet-mnist (direct encoding)\n")
    )
    other = tmp_path / "demo-cppn"  # the title said LeNet-MNIST whatever --model and --encoding were
    argv = ["demo", "--out", str(other), "--model", "lenet-mnist-noise-trained", "--encoding", "cppn"]
    assert main([*argv, "--classes", "1", "--generations", "1", "--no-progress"]) == 0
    assert "for lenet-mnist-noise-trained (cppn encoding)" in (other / "report.md").read_text().splitlines()[0]


def test_evolve_resumes_from_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "evo"
    args = ["evolve", "--out", str(out), "--no-progress", "--seed", "1"]
    assert main([*args, "--generations", "3"]) == 0
    assert main([*args, "--generations", "6"]) == 0
    assert json.loads((out / "summary.json").read_text())["results"]["evaluations"] == 6 * 64


def test_evolve_refuses_a_checkpoint_of_other_mutation_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The checkpoint records the mutation settings that differ from the defaults: a resume cannot mix them."""
    out = tmp_path / "evo"
    args = ["evolve", "--out", str(out), "--no-progress", "--classes", "3"]
    assert main([*args, "--generations", "2"]) == 0
    for flag, value in (("--mutation-rate", "0.5"), ("--eta", "3")):
        assert main([*args, "--generations", "4", flag, value]) == 2
        err = capsys.readouterr().err
        assert "written by another configuration" in err and "--fresh" in err, err
    assert main([*args, "--generations", "4", "--mutation-rate", "0.02"]) == 0  # the default, given: the same run
    assert json.loads((out / "summary.json").read_text())["results"]["evaluations"] == 4 * 64


def test_evolve_cppn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cppn"
    args = ["evolve", "--encoding", "cppn", "--classes", "1,5", "--out", str(out), "--no-progress"]
    assert main([*args, "--max-evaluations", "10000"]) == 0
    assert "2/2 classes at >= 99.99%" in capsys.readouterr().out
    assert "cppn encoding" in (out / "report.md").read_text()
    # a direct-encoding run refuses the CPPN checkpoint instead of overwriting it
    assert main(["evolve", "--classes", "1,5", "--out", str(out), "--no-progress", "--generations", "1"]) == 2
    assert "checkpoint" in capsys.readouterr().err


def test_evolve_method_strength_and_precision_reach_the_search(tmp_path: Path) -> None:
    """--method random-search is RandomSearch (fresh samples, no mutation: far below MAP-Elites at
    equal budget on the CPPN LeNet digits); --strength and --precision/--verify reach MAPElites and
    its checkpoint, so a run of other settings refuses to resume it."""
    base = ["evolve", "--encoding", "cppn", "--classes", "1,5", "--no-progress", "--max-evaluations", "2048"]
    assert main([*base, "--out", str(tmp_path / "me")]) == 0
    assert main([*base, "--out", str(tmp_path / "rs"), "--method", "random-search"]) == 0
    me, rs = (json.loads((tmp_path / n / "summary.json").read_text()) for n in ("me", "rs"))
    assert rs["settings"]["search"]["method"] == "random_search" and rs["results"]["evaluations"] == 2048
    assert me["results"]["median_confidence"] > rs["results"]["median_confidence"] + 0.05
    args = [*base, "--out", str(tmp_path / "b"), "--strength", "2", "--precision", "bf16", "--verify"]
    assert main([*args, "--generations", "2"]) == 0
    search = json.loads((tmp_path / "b" / "summary.json").read_text())["settings"]["search"]
    assert search["mutation_schedule"] == {"name": "constant", "strength": 2.0}
    assert search["precision"] == "bf16" and search["verify"] is True
    assert "precision" not in me["settings"]["search"]  # float32: no key, so older checkpoints still resume
    # precision alone: a bf16 checkpoint is not resumed at float32
    assert main([*base, "--out", str(tmp_path / "c"), "--precision", "bf16", "--generations", "2"]) == 0
    with pytest.raises(fb.errors.CheckpointError, match=r"precision: saved \"bf16\""):
        fb.search.run_evolution(tmp_path / "c", encoding="cppn", classes=["1", "5"], generations=3, progress=False)
    for changed in ({"precision": "fp32", "verify": False}, {"verify": False}):  # fp32, or bf16 unverified
        kwargs = {"precision": "bf16", "verify": True, **changed}
        with pytest.raises(fb.errors.CheckpointError, match="another configuration"):
            fb.search.run_evolution(
                tmp_path / "b",
                encoding="cppn",
                classes=["1", "5"],
                strength=2.0,
                generations=3,
                progress=False,
                **kwargs,
            )


@pytest.mark.parametrize("units", [False, True])
def test_evolve_precision_auto_follows_the_bf16_units(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, units: bool
) -> None:
    """--precision auto is bf16 (with --verify kept) where the CPU has bf16 units, else fp32 with
    --verify dropped; the summary and checkpoint hold the precision used, so a later run of the
    precision picked resumes the same checkpoint."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: units, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    base = ["evolve", "--classes", "1", "--no-progress", "--out", str(tmp_path / "a")]
    assert main([*base, "--generations", "2", "--precision", "auto", "--verify"]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    used = "bf16" if units else "fp32"
    assert (summary["settings"]["precision"], summary["settings"]["verify"]) == (used, units)
    assert summary["settings"]["search"].get("precision", "fp32") == used
    assert f"--precision auto: {used}" in out and ("--verify has no bf16 scores" in out) is not units
    explicit = ["--precision", "bf16", "--verify"] if units else []
    assert main([*base, "--generations", "3", *explicit]) == 0  # resumed (other settings: refused, exit 2)
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["results"]["evaluations"] == 3 * 64
    # auto picking the other precision (another machine) refuses the checkpoint and says how to resume it
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: not units, raising=False)
    other = "fp32" if units else "bf16"
    with pytest.raises(fb.errors.CheckpointError, match=f"precision='auto' picked '{other}'"):
        fb.search.run_evolution(tmp_path / "a", classes=["1"], generations=4, precision="auto", progress=False)
    # the random-search baseline takes auto too; a bad verify is still refused by name
    s = fb.search.run_evolution(
        tmp_path / "r", classes=["1"], generations=1, method="random-search", precision="auto", progress=False
    )
    assert s["settings"]["precision"] == other and s["settings"]["search"]["method"] == "random_search"
    with pytest.raises(fb.errors.InvalidArgumentError, match="verify"):
        fb.search.run_evolution(tmp_path / "v", classes=["1"], generations=1, precision="auto", verify="yes")  # type: ignore[arg-type]


def test_evolve_compile_scores_through_the_compiled_model_and_is_part_of_the_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--compile runs the children's scores through torch.compile (here a stand-in that counts its
    modules), reports the uncompiled model's confidences, and a checkpoint written with it is
    refused without it (the scores round differently, so the search would not be the same)."""
    compiled: list[torch.nn.Module] = []

    def stand_in(module: torch.nn.Module) -> torch.nn.Module:
        compiled.append(module)
        return module

    monkeypatch.setattr(torch, "compile", stand_in)
    base = ["evolve", "--classes", "1", "--no-progress", "--out", str(tmp_path / "a")]
    assert main([*base, "--generations", "2", "--compile"]) == 0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["settings"]["compile"] is True and summary["settings"]["search"]["compile"] is True
    assert len(compiled) == 1 and not compiled[0].training  # one frozen copy: the weights did not change
    plain = fb.search.run_evolution(tmp_path / "b", classes=["1"], generations=2, progress=False)
    assert "compile" not in plain["settings"]["search"]
    # the same seed and images; the confidences reported are the plain model's, so they agree
    got, want = (s["results"]["per_class"][0]["confidence"] for s in (summary, plain))
    assert got == pytest.approx(want, abs=1e-6)
    with pytest.raises(fb.errors.CheckpointError, match="another configuration"):
        fb.search.run_evolution(tmp_path / "a", classes=["1"], generations=3, progress=False)
    with pytest.raises(fb.errors.InvalidArgumentError, match="compile must be True or False"):
        fb.search.run_evolution(tmp_path / "c", classes=["1"], generations=1, compile="yes")  # type: ignore[arg-type]


def test_evolve_polish_counts_gradient_images_and_is_part_of_the_checkpoint(tmp_path: Path) -> None:
    """--polish interleaves GradientPolish (every 200 generations, elites between 90% and the target)."""
    base = ["evolve", "--classes", "0,1,2", "--encoding", "cppn", "--no-progress", "--generations", "201"]
    # a target above what 200 generations reach, so the polish in generation 200 has elites to work on
    argv = [*base, "--out", str(tmp_path / "a"), "--polish", "--batch-size", "8", "--target-confidence", "0.999999"]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["settings"]["polish"] is True
    assert summary["settings"]["search"]["polish"]["every"] == 200
    assert summary["settings"]["search"]["polish"]["below"] == 0.999999  # the parents' level
    # one polish, in generation 200, of the elites between 90% and the target: 50 steps each
    assert summary["results"]["gradient_images"] in (50, 100, 150)
    with pytest.raises(fb.errors.CheckpointError, match="another configuration"):
        fb.search.run_evolution(
            tmp_path / "a",
            classes=[0, 1, 2],
            encoding="cppn",
            batch_size=8,
            generations=202,
            target_confidence=0.999999,
            progress=False,
        )
    with pytest.raises(fb.errors.InvalidArgumentError, match="polish applies to the map-elites method only"):
        fb.search.run_evolution(tmp_path / "b", method="random-search", polish=True, generations=1)


def test_evolve_islands_reach_the_search_and_its_checkpoint(tmp_path: Path) -> None:
    """--islands 2: two archives of the classes, the summary's per-class figures the best over them."""
    base = ["evolve", "--classes", "1,5", "--no-progress", "--generations", "3", "--batch-size", "8"]
    assert main([*base, "--out", str(tmp_path / "a"), "--islands", "2"]) == 0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["settings"]["islands"] == 2 and summary["settings"]["search"]["islands"] == 2
    assert len(summary["results"]["per_class"]) == 2
    with pytest.raises(fb.errors.CheckpointError, match="another configuration"):  # one island is another search
        fb.search.run_evolution(tmp_path / "a", classes=[1, 5], batch_size=8, generations=4, progress=False)


def test_evolve_breeds_from_the_classes_below_its_target(tmp_path: Path) -> None:
    """--target-confidence sets the level below which MAP-Elites' parents come first (the default 99.99%)."""
    base = ["evolve", "--classes", "1,5", "--no-progress", "--generations", "2"]
    assert main([*base, "--out", str(tmp_path / "a"), "--target-confidence", "0.99"]) == 0
    assert main([*base, "--out", str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / n / "summary.json").read_text())["settings"]["search"] for n in "ab")
    assert a["parents"] == {"name": "unmet-first", "confidence": 0.99}
    assert b["parents"] == {"name": "unmet-first", "confidence": 0.9999}
    with pytest.raises(fb.errors.CheckpointError, match="another configuration"):  # a new level is a new search
        fb.search.run_evolution(tmp_path / "a", classes=["1", "5"], generations=3, progress=False)
    # --parents-confidence sets the level apart from the target (0.9999: the parents of foolbench 0.1.0)
    argv = [*base, "--out", str(tmp_path / "c"), "--target-confidence", "0.99", "--parents-confidence", "0.9999"]
    assert main(argv) == 0
    c = json.loads((tmp_path / "c" / "summary.json").read_text())["settings"]
    assert c["search"]["parents"] == {"name": "unmet-first", "confidence": 0.9999} and c["target_confidence"] == 0.99


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["evolve", "--encoding", "cppn", "--max-nodes", "3"], "--max-nodes must be at least 6"),
        (["evolve", "--encoding", "pixels"], "invalid choice"),
        (["evolve", "--model", "resnet"], "--model must be one of"),
        (["evolve", "--classes", "3,x"], "--classes must hold class indices or class names"),
        (["evolve", "--classes", "11"], "--classes must hold class indices in [0, 9], got 11"),
        (["evolve", "--max-evaluations", "0"], "--max-evaluations must be an int >= 1"),
        (["evolve", "--target-confidence", "2"], "--target-confidence"),
    ],
)
def test_bad_arguments_one_line(
    argv: list[str], match: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and err.count("\n") == 1


def test_ascend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "asc"
    assert main(["ascend", "--classes", "3,4", "--steps", "300", "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())["results"]
    assert summary["fooled_at_0.9999"] == 2 and summary["method"] == "gradient_ascent"


def test_uap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "uap"
    args = ["uap", "--fit", "100", "--held-out", "200", "--max-passes", "3", "--out", str(out), "--no-progress"]
    assert main(args) == 0  # progress reaches the fit's bar; --no-progress hides it
    summary = json.loads((out / "summary.json").read_text())["results"]
    assert summary["held_out_images"] == 200 and summary["fitting_images"] == 100
    assert len(summary["history"]) == summary["passes"] <= 3
    saved = torch.load(out / "perturbation.pt", weights_only=True)
    v = saved["perturbation"]
    assert saved["eps"] == 0.3 and float(v.abs().max()) <= 0.3 + 1e-6 and float(v.abs().max()) > 0.1
    assert (saved["norm"], saved["method"]) == ("inf", "sgd")  # the keys UAPResult.save writes
    held = fb.models.mnist_digits("test", limit=200)[0]
    # the reported rate is the saved perturbation's rate on the same held-out digits
    assert summary["held_out_fooling_rate"] == fb.search.fooling_rate(fb.models.lenet_mnist(), held, v) > 0.05
    assert (out / "images.png").is_file() and (out / "perturbation.pt").is_file()
    assert main(["uap", "--eps", "-1", "--out", str(out)]) == 2


def _modes(folder: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir() if not p.name.startswith(".")}


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_output_files_respect_the_umask(umask: int, mode: int, tmp_path: Path) -> None:
    old = os.umask(umask)
    try:
        assert main(["ascend", "--classes", "1", "--steps", "5", "--out", str(tmp_path)]) == 0
    finally:
        os.umask(old)
    modes = _modes(tmp_path)
    assert set(modes) == {"images.png", "images.pt", "report.md", "summary.json"}
    assert set(modes.values()) == {mode}
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_second_writer_is_refused_while_the_first_holds_the_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "evo"
    args = ["evolve", "--generations", "1", "--classes", "1", "--no-progress", "--out", str(out)]
    with _io.locked_folder(_io.out_folder(out)):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert (
            err
            == f"foolbench: error: --out {str(out)!r} is in use by another foolbench run; wait for it or choose another folder\n"
        )
        assert not (out / "summary.json").exists()
    assert main(args) == 0  # free again once the holder is done


def test_a_running_process_holds_the_lock(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    holder = (
        "import sys, time; from foolbench import _io\n"
        "with _io.locked_folder(_io.out_folder(sys.argv[1])):\n"
        "    print('locked', flush=True); time.sleep(60)\n"
    )
    with subprocess.Popen([sys.executable, "-c", holder, str(tmp_path)], stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
            assert main(["uap", "--fit", "10", "--held-out", "10", "--max-passes", "1", "--out", str(tmp_path)]) == 2
            assert "is in use by another foolbench run" in capsys.readouterr().err
        finally:
            proc.kill()
    assert main(["uap", "--fit", "10", "--held-out", "10", "--max-passes", "1", "--out", str(tmp_path)]) == 0


@pytest.mark.parametrize(
    ("argv", "changed", "product"),
    [
        (["ascend", "--classes", "2", "--steps", "20"], ["--steps", "21"], "images.pt"),
        (["uap", "--fit", "20", "--held-out", "20", "--max-passes", "1"], ["--eps", "0.25"], "perturbation.pt"),
    ],
)
def test_rerun_with_the_same_settings_keeps_the_outputs(
    argv: list[str], changed: list[str], product: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ["--out", str(tmp_path)]
    assert main([*argv, *out]) == 0
    first = json.loads((tmp_path / "summary.json").read_text())
    stamp = (tmp_path / product).stat().st_mtime_ns
    capsys.readouterr()
    assert main([*argv, *out]) == 0
    assert "kept: same settings already computed" in capsys.readouterr().out
    assert (tmp_path / product).stat().st_mtime_ns == stamp
    assert json.loads((tmp_path / "summary.json").read_text()) == first
    assert main([*argv, *out, "--fresh"]) == 0
    assert "kept" not in capsys.readouterr().out and (tmp_path / product).stat().st_mtime_ns != stamp
    assert main([*argv, *changed, *out]) == 0
    assert "kept" not in capsys.readouterr().out
    settings = json.loads((tmp_path / "summary.json").read_text())["settings"]
    assert settings[changed[0][2:].replace("-", "_")] == type(settings[changed[0][2:].replace("-", "_")])(changed[1])


def test_evolve_fresh_starts_over(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["evolve", "--classes", "3", "--no-progress", "--out", str(tmp_path)]
    assert main([*args, "--generations", "2", "--seed", "1"]) == 0
    assert main([*args, "--generations", "2", "--seed", "2"]) == 2  # the checkpoint is another seed's
    assert main([*args, "--generations", "2", "--seed", "2", "--fresh"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["settings"]["seed"] == 2 and summary["results"]["evaluations"] == 2 * 64


def test_every_command_writes_one_summary_shape(tmp_path: Path) -> None:
    runs = {
        "demo": ["--classes", "1", "--generations", "1", "--no-progress"],
        "evolve": ["--classes", "1", "--generations", "1", "--no-progress"],
        "ascend": ["--classes", "1", "--steps", "2"],
        "uap": ["--fit", "10", "--held-out", "10", "--max-passes", "1"],
    }
    for command, argv in runs.items():
        assert main([command, *argv, "--out", str(tmp_path / command)]) == 0
        summary = json.loads((tmp_path / command / "summary.json").read_text())
        assert list(summary) == ["schema", "command", "settings", "results", "versions"]
        assert summary["schema"] == "foolbench.summary/1" and summary["command"] == command
        assert summary["versions"]["foolbench"] == fb.__version__ and summary["versions"]["torch"] == torch.__version__
        assert summary["versions"]["torch_threads"] == 1  # the --threads default
        assert summary["settings"]["model"] == "lenet-mnist" and summary["settings"]["seed"] == 0


def test_evolve_generations_alone_are_not_cut_by_the_default_evaluation_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`evolve --generations N` also ran with the default --max-evaluations 30,000: a generation budget past it
    was cut short in silence, though --help said that the generation budget has no limit by default."""
    seen: list[dict[str, Any]] = []
    original = fb.search.run_evolution

    @functools.wraps(original)  # its signature: the command passes the options it takes
    def spy(out: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        return original(out, **kwargs)

    monkeypatch.setattr(fb.search, "run_evolution", spy)
    base = ["evolve", "--classes", "1", "--batch-size", "8", "--no-progress"]

    def evaluations(out: Path) -> int:
        return int(json.loads((out / "summary.json").read_text())["results"]["evaluations"])

    assert main([*base, "--generations", "3", "--out", str(tmp_path / "g")]) == 0
    assert seen[-1]["max_evaluations"] is None and seen[-1]["generations"] == 3  # no evaluation cap
    assert evaluations(tmp_path / "g") == 3 * 8
    assert main([*base, "--generations", "3", "--max-evaluations", "16", "--out", str(tmp_path / "both")]) == 0
    assert seen[-1]["max_evaluations"] == 16 and evaluations(tmp_path / "both") == 16  # whichever comes first
    assert main([*base, "--target-confidence", "0.01", "--out", str(tmp_path / "default")]) == 0
    assert seen[-1]["max_evaluations"] == 30_000 and seen[-1]["generations"] is None  # the default budget
    assert main(["demo", *base[1:], "--target-confidence", "0.01", "--out", str(tmp_path / "demo")]) == 0
    assert seen[-1]["max_evaluations"] == 100_000


def test_search_summary_line_never_rounds_a_target_below_1_to_100_percent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --target-confidence of 0.9999999 was printed as `classes at >= 100%`, a target no search can meet."""
    argv = ["ascend", "--classes", "1", "--steps", "1", "--no-progress", "--out", str(tmp_path / "a")]
    assert main([*argv, "--target-confidence", "0.9999999"]) == 0
    assert " classes at >= 99.99999% after " in capsys.readouterr().out
    assert main([*argv, "--target-confidence", "0.9999", "--out", str(tmp_path / "b")]) == 0
    assert " classes at >= 99.99% after " in capsys.readouterr().out
