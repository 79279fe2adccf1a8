"""Run a suite: every (model, defense, method) cell, resumable, with a versioned ``results.json``.

The driver (:func:`run_suite`) builds the models and defenses, turns each cell into a
:class:`~foolbench.bench.CellTask`, hands the tasks to an executor, and alone writes the output
folder as results come back. Trust model: a suite file that names factories or a data function
(``"module:function"``) runs that code, like a Python script; run only suite files you trust.
"""

from __future__ import annotations

import platform
import time
import warnings
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

import foolbench
from foolbench import _checks, _io
from foolbench.bench._config import Spec, SuiteConfig, load_config
from foolbench.bench._executor import CellResult, CellTask, Executor, LocalExecutor, forget_workspaces, workspace
from foolbench.bench._registry import DEFENSES, METHODS, Model
from foolbench.bench._report import claims, in_sample, write_reports
from foolbench.bench._store import (
    bytes_digest,
    cell_seed,
    digest,
    file_key,
    metrics_problem,
    tensors_digest,
    validate_cell,
)
from foolbench.bench._workspace import Workspace, device_kind
from foolbench.errors import CheckpointError, ConfigError, InvalidTypeError

__all__ = ["SCHEMA", "run_suite"]

SCHEMA = "foolbench.bench/2"


def _applies(spec: Spec, model: str) -> bool:
    return spec.only is None or model in spec.only


def _files_problem(out: Path, checksums: Any) -> str:
    """Why a cell's files (relative path -> digest) are not the ones it was written with; empty if they are."""
    if not isinstance(checksums, dict):
        return "its files_checksums field is not an object"
    for rel, expect in checksums.items():
        path = out / str(rel)
        try:
            data = path.read_bytes()
        except OSError:
            return f"its file {str(rel)!r} is missing or unreadable"
        if bytes_digest(data) != expect:
            return f"its file {str(rel)!r} is not the one it was written with"
    return ""


def _record(task: CellTask, dspec: Spec, mspec: Spec, result: CellResult) -> dict[str, Any]:
    runs = {} if mspec.run is None else {"group": mspec.group, "run": mspec.run}
    return {
        "key": task.key,
        "model": task.model,
        "defense": task.defense,
        "defense_kind": dspec.kind,
        "method": task.method,
        "method_kind": mspec.kind,
        "params": mspec.params,
        "seed": task.seed,
        "metrics": result.metrics,
        "wall_seconds": result.seconds,
        "digest": task.digest,
        **runs,
    }


def _revision(mspec: Spec) -> list[int]:
    """The method kind's behaviour revision for the digest: nothing for revision 1 (digests as before revisions)."""
    rev = METHODS[mspec.kind].revision(mspec.params)
    return [] if rev == 1 else [rev]


def _defense_revision(dspec: Spec, model: Model) -> list[int]:
    """The defense kind's behaviour revision on ``model`` for the digest: nothing for revision 1."""
    lower, upper = model.classifier.bounds
    rev = DEFENSES[dspec.kind].revision(dspec.params, (float(lower), float(upper)))
    return [] if rev == 1 else [rev]


class _Driver:
    """Builds the tasks, loads valid cached cells, writes finished ones, computes the transfer matrices."""

    def __init__(self, cfg: SuiteConfig, out: Path, ws: Workspace, device: str | None, fresh: bool) -> None:
        self.cfg, self.out, self.ws, self.device, self.fresh = cfg, out, ws, device, fresh
        self.progress = False
        self.cells: dict[str, dict[str, Any]] = {}
        self.tensors: dict[str, dict[str, torch.Tensor]] = {}
        self.specs: dict[str, tuple[Spec, Spec]] = {}
        self.failed: list[dict[str, Any]] = []

    def task(self, model: str, dspec: Spec, mspec: Spec) -> CellTask:
        seed = cell_seed(self.cfg.seed, model, dspec.name, mspec.name)
        m = self.ws.model(model)
        params = METHODS[mspec.kind].Params.identity(mspec.params)
        if mspec.run is not None:  # one of runs = N: its seed and key are its name's, whatever N (a run reads no N)
            params = {k: v for k, v in params.items() if k != "runs"}
        spec = self.ws.model_spec(model)
        # the [data] settings only where the model's data is the suite's (another dataset's cells ignore them)
        suites_data = (spec.params.get("dataset") or self.cfg.data["dataset"]) == self.cfg.data["dataset"]
        determined_by = {
            "schema": SCHEMA,
            "model": [spec.params, m.identity],
            "defense": [dspec.kind, dspec.params, self.ws.defense_digest(model, dspec), *_defense_revision(dspec, m)],
            "method": [mspec.kind, params, *_revision(mspec)],
            "seed": seed,
            "data": [self.cfg.data if suites_data else {}, self.ws.data_identity(model)],
        }
        for kind in device_kind(self.device):  # another device's cells are its own (CPU digests as before)
            determined_by["device"] = kind
        key = file_key(model, dspec.name, mspec.name)
        self.specs[key] = (dspec, mspec)
        return CellTask(self.cfg, model, dspec.name, mspec.name, key, seed, digest(determined_by), str(self.out),
                        self.device, self.fresh, self.progress)  # fmt: skip

    def cached(self, task: CellTask) -> bool:
        """Load a finished cell if it is valid and of this configuration; warn about a bad one."""
        path = self.out / "cells" / f"{task.key}.json"
        if self.fresh or not path.is_file():
            return False
        dspec, mspec = self.specs[task.key]
        expected = {"key": task.key, "model": task.model, "defense": task.defense, "method": task.method,
                    "method_kind": mspec.kind, "defense_kind": dspec.kind, "digest": task.digest}  # fmt: skip
        record, why = validate_cell(path, expected, METHODS[mspec.kind].rates)
        tensors: dict[str, torch.Tensor] = {}
        # the digest of the cell's tensors file, None where the cell kept none (a .pt beside it is another
        # cell's, never loaded); cells of 0.1.0 have no such field and take a .pt beside them as theirs
        expect = record.get("tensors_checksum", "any") if record is not None else None
        pt = path.with_suffix(".pt")
        if record is not None and expect is not None and (pt.is_file() or expect != "any"):
            try:
                tensors = _io.load_torch(pt, what="cell tensors")
                if not all(isinstance(t, torch.Tensor) for t in tensors.values()):
                    record, why = None, f"its tensors file {pt.name!r} holds something other than tensors"
                elif expect != "any" and tensors_digest(tensors) != expect:
                    record, why = None, f"its tensors file {pt.name!r} is not the one it was written with"
            except (CheckpointError, FileNotFoundError) as err:
                record, why = None, str(err)
        # its files (an image grid): another configuration's, written over it by a run killed before its cell file,
        # are not its own
        if record is not None:
            why = _files_problem(self.out, record.get("files_checksums", {}))
            record = None if why else record
        if record is None:
            if why:
                warnings.warn(f"recomputing cell {str(path)!r}: {why}", stacklevel=3)
            return False
        # storage details: results.json lists the cells as computed
        for detail in ("checksum", "tensors_checksum", "files_checksums"):
            record.pop(detail, None)
        self.cells[task.key], self.tensors[task.key] = record, tensors
        return True

    def finish(self, task: CellTask, result: CellResult) -> None:
        dspec, mspec = self.specs[task.key]
        for rel, data in result.files.items():
            _io.atomic_write_bytes(self.out / rel, data)
        path = self.out / "cells" / f"{task.key}.json"
        if result.tensors:
            _io.save_torch(path.with_suffix(".pt"), result.tensors)
        else:  # an earlier configuration's tensors must not pass for this cell's
            path.with_suffix(".pt").unlink(missing_ok=True)
        record = _record(task, dspec, mspec, result)
        # last: a cell file exists only once everything it names does; its checksum (kept in the file,
        # not in results.json) makes a cell edited by hand recomputed rather than trusted, and the
        # tensors' and files' digests tie the .pt beside it and its image grid to it
        stored = {
            **record,
            "tensors_checksum": tensors_digest(result.tensors) if result.tensors else None,
            "files_checksums": {rel: bytes_digest(data) for rel, data in sorted(result.files.items())},
        }
        _io.write_json(path, {**stored, "checksum": digest(stored)})
        self.cells[task.key], self.tensors[task.key] = record, result.tensors

    def transfer(self, order: list[str]) -> dict[str, Any]:
        """Each transferable method's matrix between the undefended models it ran on (rows: made on).

        Keyed by method kind where the suite has one method of that kind, else by method name: two
        methods of one kind (PGD at two budgets) get a matrix each, never one whose rows mix them.
        """
        out: dict[str, Any] = {}
        cells = [self.cells[k] for k in order if k in self.cells and self.cells[k]["defense_kind"] == "none"]
        per_kind = Counter(spec.kind for spec in self.cfg.methods)
        method_names = {spec.name for spec in self.cfg.methods}
        for spec in self.cfg.methods:
            cls = METHODS[spec.kind]
            if cls.transfer is None:
                continue
            sources = {c["model"]: self.tensors.get(c["key"], {}) for c in cells if c["method"] == spec.name}
            names = [n for n, t in sources.items() if t]
            if len(names) < 2:
                continue
            if len({tuple(self.ws.model(n).classifier.input_shape) for n in names}) != 1:
                continue
            if len({self.ws.model_spec(n).params.get("dataset", self.cfg.data["dataset"]) for n in names}) != 1:
                continue
            x = self.ws.data(names[0])[1][0]
            matrix = [[cls.transfer_rate(self.ws.model(dst).classifier, sources[src], x) for dst in names]
                      for src in names]  # fmt: skip
            # keyed by the kind unless another method of that kind, or a method named like the kind, exists
            alone = per_kind[spec.kind] == 1 and (spec.name == spec.kind or spec.kind not in method_names)
            title = cls.transfer if alone else f"{cls.transfer}, {spec.name}"
            out[spec.kind if alone else spec.name] = {
                "kind": spec.kind,
                "method": spec.name,
                "title": title,
                "models": names,
                "matrix": matrix,
            }
        return out

    def diversity(self, order: list[str]) -> list[dict[str, Any]]:
        """Per ``runs = N`` method, model and defense: how different the runs' elites are, per class."""
        from foolbench.bench import _methods
        from foolbench.bench._diversity import diversity

        groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        unkept: set[str] = set()
        for key in order:
            cell = self.cells.get(key)
            if cell is None or cell.get("group") is None:
                continue
            if "images" in self.tensors.get(key, {}):
                groups.setdefault((cell["model"], cell["defense"], cell["group"]), []).append(cell)
            else:
                unkept.add(cell["group"])
        if unkept:  # said, not dropped in silence
            warnings.warn(
                f"no diversity measured for {sorted(unkept)}: their cells keep no elites (searches over more than "
                f"{_methods.KEEP_IMAGES_LIMIT} classes)",
                stacklevel=3,
            )
        out = []
        for (model, defense, group), cells in groups.items():
            if len(cells) < 2 or len({tuple(c["metrics"].get("class_indices") or []) for c in cells}) != 1:
                continue
            dspec = next(d for d in self.cfg.defenses if d.name == defense)
            target = self.ws.target(model, dspec)
            real = self.ws.data(model)[1]
            measured = diversity(
                target.classifier, [self.tensors[c["key"]]["images"] for c in cells],
                list(cells[0]["metrics"]["class_indices"]), [c["metrics"]["confidence"] for c in cells], real,
            )  # fmt: skip
            dataset = self.ws.model_spec(model).params.get("dataset") or self.cfg.data["dataset"]
            reference = (
                f"real images of the class from the held-out split of {dataset!r} (at most 100 per class)"
                if any(n >= 2 for n in measured["real_count"])  # one image of a class gives no pairwise distance
                else f"real images of the class in {dataset!r}: too few (fewer than 2 per class) for a reference"
            )
            out.append({"model": model, "defense": defense, "defense_kind": dspec.kind, "method": group,
                        "reference": reference,
                        "run_cells": [c["key"] for c in cells], **measured})  # fmt: skip
        return out


def _cell_threads(executor: Executor) -> int:
    """The torch threads the cells run with: the executor's own (a ``RayExecutor``'s ``threads``), else this
    process's (the :class:`LocalExecutor` runs them here)."""
    threads = getattr(executor, "threads", None)
    if isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1:
        return threads
    return torch.get_num_threads()


def _settings(cfg: SuiteConfig, device: str | None, executor: Executor, fresh: bool) -> dict[str, Any]:
    """Every setting the results depend on, resolved (defaults filled in)."""
    return {
        "device": str(device or "cpu"),
        "torch_threads": _cell_threads(executor),  # the cells' (the report's header gives it)
        "driver_torch_threads": torch.get_num_threads(),  # this process's: models, defenses, transfer matrices
        "torch_interop_threads": torch.get_num_interop_threads(),
        "executor": repr(executor),
        "fresh": fresh,
        "data": cfg.data,
        "models": [{"name": m.name, **m.params} for m in cfg.models],
        "defenses": [{"name": d.name, "kind": d.kind, "params": d.params, "models": d.only} for d in cfg.defenses],
        "methods": [{"name": m.name, "kind": m.kind, "params": m.params, "models": m.only} for m in cfg.methods],
    }


def _check(driver: _Driver, task: CellTask, result: CellResult) -> str | None:
    metrics: Any = result.metrics  # from user code: checked, not trusted
    if not isinstance(metrics, dict):
        return f"metrics must be a dict, got {type(metrics).__name__}"
    return metrics_problem(result.metrics, METHODS[driver.specs[task.key][1].kind].rates)


def _run_tasks(driver: _Driver, executor: Executor, tasks: list[CellTask], bar: Any) -> None:
    """Run ``tasks``; a failed task is retried once, then recorded in ``driver.failed``."""
    failed: list[tuple[CellTask, Exception]] = []
    for attempt in range(2):
        batch: Iterable[CellTask] = tasks if attempt == 0 else [t for t, _ in failed]
        failed = []
        for task, result in executor.map(batch):
            if isinstance(result, CellResult) and (problem := _check(driver, task, result)):
                result = ValueError(f"the method returned bad metrics: {problem}")
            if isinstance(result, CellResult):
                driver.finish(task, result)
                bar.update(1)
            else:
                failed.append((task, result))
        if not failed:
            return
    from foolbench.distributed._executor import CellFailed  # here: foolbench.distributed imports foolbench.bench

    for task, err in failed:
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        # a cell failed on a Ray worker comes back as CellFailed("ValueError: ..."): the same text as locally
        error = message if isinstance(err, CellFailed) else f"{type(err).__name__}: {message}"
        driver.failed.append({"key": task.key, "model": task.model, "defense": task.defense,
                              "method": task.method, "error": error})  # fmt: skip
        bar.update(1)


def run_suite(
    config: str | Path | SuiteConfig,
    *,
    out: str | Path,
    device: str | None = None,
    progress: bool = True,
    executor: Executor | None = None,
    fresh: bool = False,
) -> dict[str, Any]:
    """Run every (model, defense, method) cell of a suite and write its reports to ``out``.

    Cells already finished in ``out`` are loaded, not recomputed, when they are valid and were
    made by the same configuration (every parameter, the model's weights, the data, the seed, the
    device type);
    anything else is recomputed, a corrupt or edited cell with a warning naming its file. Each
    cell is seeded from the suite seed and its names, so results do not depend on the order or
    the executor that runs them. A cell that fails twice is listed in ``report.md`` and in
    ``results.json["failed"]``; the others are kept. Writes ``results.json`` (schema
    :data:`SCHEMA`), ``report.md``, PNG grids under ``images/`` and, with matplotlib, plots.
    An earlier run's ``results.json``, ``report.md`` and plots are deleted before the first cell is
    written and written anew at the end, so an interrupted run leaves none beside cells they do not describe.

    Trust model: a suite file is code. ``factory = "module:function"`` and
    ``[data] dataset = "module:function"`` import and call that function (looked up in the suite
    file's folder, then the current directory, then ``sys.path``), like running a Python script;
    run only suite files you trust. Built-in suites name only foolbench's own factories.

    Args:
        config: a built-in suite name (``"quick"``, ``"paper"``, ``"paper-imagenet"``), a TOML path or a
            :class:`SuiteConfig`.
        out: output folder.
        device: ``"cpu"`` or ``"cuda"`` (default CPU).
        progress: show a progress bar over the cells, and one inside the running cell.
        executor: runs the cell tasks (default :class:`LocalExecutor`: in this process, in order).
        fresh: recompute everything (cells, trained models, defenses, search checkpoints).

    Returns:
        The content of ``results.json``.

    Raises:
        ConfigError: invalid suite, unknown names, a model factory that fails or returns a bad model.
        InvalidTypeError: ``executor`` has no ``map`` method.

    Examples:
        >>> import foolbench as fb, tempfile
        >>> cfg = fb.bench.parse_config({
        ...     "models": [{"zoo": "lenet-mnist"}],
        ...     "data": {"dataset": "mnist", "train": 200, "test": 100},
        ...     "methods": [{"kind": "random", "n": 32}]})
        >>> res = fb.bench.run_suite(cfg, out=tempfile.mkdtemp(), progress=False)
        >>> res["schema"], len(res["cells"]), res["failed"]
        ('foolbench.bench/2', 1, [])
    """
    _checks.boolean("fresh", fresh)
    _checks.boolean("progress", progress)
    executor = LocalExecutor() if executor is None else executor
    if not callable(getattr(executor, "map", None)):
        raise InvalidTypeError(f"executor must have a map(tasks) method, got {type(executor).__name__}")
    cfg = config if isinstance(config, SuiteConfig) else load_config(config)
    out_dir = _io.out_folder(out)
    with _io.locked_folder(out_dir):  # a second writer into the same folder is refused
        return _run(cfg, out_dir, device=device, progress=progress, executor=executor, fresh=fresh)


def _plan(cfg: SuiteConfig, ws: Any, driver: _Driver) -> tuple[list[CellTask], list[Any], list[Any]]:
    """The cell tasks of a suite, with the clean accuracy and round tables of every (model, defense)."""
    tasks: list[CellTask] = []
    clean: list[Any] = []
    tables: list[Any] = []
    for mspec in cfg.models:  # before any defense is built (a fooling-class round trains for minutes)
        num_classes = ws.model(mspec.name).classifier.num_classes
        for s in (s for s in cfg.methods if _applies(s, mspec.name)):
            if problem := s.build(METHODS).check(num_classes):
                raise ConfigError(f"methods {s.group or s.name!r} on model {mspec.name!r}: {problem}")
    for mspec in cfg.models:
        for dspec in (d for d in cfg.defenses if _applies(d, mspec.name)):
            target = ws.target(mspec.name, dspec)
            x, y = ws.data(mspec.name)[1]
            acc = float((target.classifier.predict(x).cpu() == y.cpu()).double().mean())
            clean.append({"model": mspec.name, "defense": dspec.name, "clean_accuracy": acc, **target.info})
            if target.table is not None:
                tables.append({"model": mspec.name, "defense": dspec.name, **target.table})
            tasks += [driver.task(mspec.name, dspec, s) for s in cfg.methods if _applies(s, mspec.name)]
    return tasks, clean, tables


def _forget_reports(out_dir: Path) -> None:
    """Delete the reports of an earlier run: ``results.json``, ``report.md`` and the plots drawn from them.

    A run that is interrupted or crashes once it writes cells must not leave them beside reports of other
    cells (another seed's, other settings'); the reports are written anew when the run ends.
    """
    for name in ("results.json", "report.md"):
        (out_dir / name).unlink(missing_ok=True)
    plots = out_dir / "plots"
    if plots.is_dir():
        for plot in plots.glob("*.png"):  # every one is drawn from results.json by write_reports
            if plot.is_file():
                plot.unlink()


def _run(
    cfg: SuiteConfig, out_dir: Path, *, device: str | None, progress: bool, executor: Executor, fresh: bool
) -> dict[str, Any]:
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    ws = workspace(cfg, out_dir, device, fresh=fresh, new=True)
    driver = _Driver(cfg, out_dir, ws, device, fresh)
    driver.progress = progress
    tasks, clean, tables = _plan(cfg, ws, driver)
    # the suite is valid and its models built (a bad factory leaves the folder as it was); from here on cells
    # change, so the earlier reports go: rewritten at the end, never left beside cells they do not describe
    _forget_reports(out_dir)
    order = [t.key for t in tasks]
    with tqdm(total=len(tasks), disable=not progress, desc=f"suite {cfg.name}", unit="cell", leave=False) as bar:
        todo = [t for t in tasks if not driver.cached(t)]
        bar.update(len(tasks) - len(todo))
        _run_tasks(driver, executor, todo, bar)
    ws.fresh = False
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "suite": cfg.name,
        "foolbench": foolbench.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device or "cpu"),
        "seed": cfg.seed,
        "data": cfg.data,
        "config": cfg.raw,
        "settings": _settings(cfg, device, executor, fresh),
        "seconds": round(time.perf_counter() - t0, 1),
        "clean": clean,
        "cells": [driver.cells[k] for k in order if k in driver.cells],
        "failed": driver.failed,
        "defense_tables": tables,
        "transfer": driver.transfer(order),
        "diversity": driver.diversity(order),
    }
    results["claims"] = claims(results)
    if fitted := in_sample(results):
        warnings.warn(
            f"fitted and scored on the same images (their dataset has one split): {'; '.join(fitted)}", stacklevel=3
        )
    write_reports(results, out_dir)
    forget_workspaces()  # free the models
    return results
