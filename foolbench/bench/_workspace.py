"""Data, models and defended models of a suite, built once per process (private).

Every call into :mod:`foolbench.models` made by the bench is in this module. Factories and data
functions named in a suite file are imported and called here: a suite file that names them is code.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from foolbench import _checks, _io
from foolbench.bench._config import Spec, SuiteConfig
from foolbench.bench._registry import DEFENSES, Context, Model, Target
from foolbench.bench._store import digest, file_key, tensors_digest
from foolbench.errors import CheckpointError, ConfigError, FoolbenchError

__all__ = ["Workspace", "resolve"]

Batch = tuple[torch.Tensor, torch.Tensor]


@contextlib.contextmanager
def _search_path(folders: list[str]) -> Iterator[None]:
    saved = list(sys.path)
    sys.path[:0] = folders
    try:
        yield
    finally:
        sys.path[:] = saved


def _where(folder: str | None) -> list[str]:
    return list(dict.fromkeys([*([folder] if folder else []), str(Path.cwd())]))


# a module name resolved from a suite's or the current folder -> (its file, the file's (mtime, size)) then
_IMPORTED: dict[str, tuple[Path, tuple[int, int] | None]] = {}


def _user_file(module_name: str, where: list[str]) -> Path | None:
    """The file ``module_name`` is imported from in the first of the ``where`` folders that holds it."""
    rel = Path(*module_name.split("."))
    for folder in where:
        for candidate in (Path(folder) / rel.with_suffix(".py"), Path(folder) / rel / "__init__.py"):
            if candidate.is_file():
                return candidate.resolve()
    return None


def _stamp(file: Path | None) -> tuple[int, int] | None:
    if file is None:
        return None
    st = file.stat()
    return st.st_mtime_ns, st.st_size


def device_kind(device: str | None) -> list[str]:
    """What a key records of ``device``: nothing on the CPU (keys as before), else its kind (``["cuda"]``):
    another device draws other random numbers and trains other weights."""
    kind = torch.device(device or "cpu").type
    return [] if kind == "cpu" else [kind]


def factory_stamps(cfg: SuiteConfig) -> list[Any]:
    """Each user factory of the suite (models' ``factory``, ``module:function`` datasets) with its file's
    ``(mtime, size)`` now: a process keeping a workspace (a Ray worker) builds a new one when a file changed."""
    paths = [m.params.get("factory") for m in cfg.models] + [m.params.get("dataset") for m in cfg.models]
    paths.append(cfg.data.get("dataset"))
    where = _where(cfg.folder)
    out: list[Any] = []
    for path in dict.fromkeys(p for p in paths if isinstance(p, str) and ":" in p):
        file = _user_file(path.partition(":")[0], where)
        out.append([path, None if file is None else [str(file), *(_stamp(file) or ())]])
    return out


def resolve(path: str, what: str, folder: str | None) -> Callable[..., Any]:
    """Import ``"module:function"``, looking in the suite file's folder, then the current directory, then sys.path.

    A module this function imported from another folder, or from this file before it was edited, is
    imported again from the file found: a suite never runs another suite's or an old factory. (Modules
    imported otherwise, and foolbench itself, are left as they are.)

    Raises:
        ConfigError: a malformed path, an import that fails (naming where it looked), not callable.
    """
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{what}: factory must look like 'package.module:function', got {path!r}")
    where = _where(folder)
    file = _user_file(module_name, where)
    top = module_name.partition(".")[0]
    seen = _IMPORTED.get(module_name)  # (file, stamp) of this name's last import here
    if file is not None and seen is not None and seen != (file, _stamp(file)) and top != "foolbench":
        # another folder's module of that name, or this file edited since: import it afresh
        for name in [k for k in sys.modules if k == top or k.startswith(top + ".")]:
            del sys.modules[name]
    try:
        with _search_path(where):
            module = importlib.import_module(module_name)
            fn = getattr(module, attr)
        loaded = getattr(module, "__file__", None)
        if file is not None and loaded is not None and Path(loaded).resolve() == file:
            _IMPORTED[module_name] = (file, _stamp(file))
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # noqa: BLE001 - the user's module may raise anything, SystemExit included
        raise ConfigError(
            f"{what}: cannot import factory {path!r} (looked in {', '.join(where)} and sys.path): "
            f"{type(err).__name__}: {err}"
        ) from None
    if not callable(fn):
        raise ConfigError(f"{what}: factory {path!r} is not callable")
    return fn  # type: ignore[no-any-return]


def _call(fn: Callable[..., Any], path: str, what: str, *args: Any) -> Any:
    try:
        return fn(*args)
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # noqa: BLE001 - SystemExit, os._exit-like misuse: one clear line
        raise ConfigError(f"{what}: factory {path!r} failed: {type(err).__name__}: {err}") from None


def _as_batch(x: Any, y: Any, where: str) -> Batch:
    try:
        xt = torch.as_tensor(x).float()
        yt = torch.as_tensor(y).long()
    except (TypeError, ValueError, RuntimeError) as err:
        raise ConfigError(f"{where}: cannot read images and labels as tensors: {err}") from None
    if xt.dim() != 4 or yt.dim() != 1 or xt.shape[0] != yt.shape[0] or xt.shape[0] == 0:
        raise ConfigError(
            f"{where}: expected images (B, C, H, W) and labels (B,) with the same B > 0, "
            f"got {tuple(xt.shape)} and {tuple(yt.shape)}"
        )
    if not torch.isfinite(xt).all():
        raise ConfigError(f"{where}: images must be finite")
    return xt, yt


def _user_data(dataset: str, folder: str | None) -> tuple[Batch, Batch]:
    if dataset.endswith(".npz"):
        import numpy as np

        candidates = [Path(dataset)] if Path(dataset).is_absolute() else [Path(d) / dataset for d in _where(folder)]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise ConfigError(f"data.dataset: no file {dataset!r} (looked in {', '.join(map(str, candidates))})")
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = [f[k] for k in ("x_train", "y_train", "x_test", "y_test")]
        except (OSError, ValueError, KeyError) as err:
            raise ConfigError(
                f"data.dataset {str(path)!r} must be an .npz with x_train, y_train, x_test, y_test: {err}"
            ) from None
    else:
        out = _call(resolve(dataset, "data.dataset", folder), dataset, "data.dataset")
        if not isinstance(out, tuple | list) or len(out) != 4:
            raise ConfigError(
                f"data.dataset {dataset!r} must return (x_train, y_train, x_test, y_test), got {out!r:.80}"
            )
        arrays = list(out)
    train = _as_batch(arrays[0], arrays[1], f"data.dataset {dataset!r} train")
    return train, _as_batch(arrays[2], arrays[3], f"data.dataset {dataset!r} test")


def architecture(module: nn.Module) -> str:
    """A digest of ``module``'s architecture: its ``repr`` and the source of its user-defined module classes.

    Weights alone do not tell two architectures apart (a ReLU and a Sigmoid have none): a factory model's
    identity and its trained-weights cache key take this too. The classes are those among
    ``module.modules()`` not defined in torch (their source, where :func:`inspect.getsource` finds it, so an
    edited ``forward`` counts).

    Examples:
        >>> relu = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
        >>> architecture(relu) == architecture(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
        True
        >>> architecture(relu) == architecture(nn.Sequential(nn.Linear(2, 2), nn.Sigmoid()))
        False
    """
    sources = []
    for cls in dict.fromkeys(type(m) for m in module.modules()):
        if cls.__module__ == "torch" or cls.__module__.startswith("torch."):
            continue
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):  # defined in a REPL or a C extension: its name and the repr stand for it
            source = ""
        sources.append([f"{cls.__module__}.{cls.__qualname__}", source])
    return digest([repr(module), sources])


class Workspace:
    """A suite's data, models and defended models, built lazily and kept for the process."""

    def __init__(self, cfg: SuiteConfig, out: Path, device: str | None, *, fresh: bool = False) -> None:
        self.cfg, self.out, self.device, self.fresh = cfg, out, device, fresh
        self._data: dict[str, tuple[Batch, Batch]] = {}
        self.models: dict[str, Model] = {}
        self._targets: dict[tuple[str, str], Target] = {}
        self._identity: dict[int, str] = {}

    # -- data -----------------------------------------------------------------------
    def data(self, model: str | None = None) -> tuple[Batch, Batch]:
        """(train, test) of ``model``'s dataset (the suite's, unless the model names another)."""
        spec = self.model_spec(model) if model else None
        dataset = (spec.params.get("dataset") if spec else None) or self.cfg.data["dataset"]
        if dataset not in self._data:
            self._data[dataset] = self._load(dataset)
        return self._data[dataset]

    def _load(self, dataset: str) -> tuple[Batch, Batch]:
        from foolbench.models import imagenet_photos, mnist_digits

        data = self.cfg.data if dataset == self.cfg.data["dataset"] else {}
        if dataset == "mnist":
            train = mnist_digits("train", limit=int(data.get("train", 4000)), device=self.device)
            return train, mnist_digits("test", limit=int(data.get("test", 1000)), device=self.device)
        if dataset == "imagenet-photos":
            x, y = imagenet_photos(int(data.get("size", 224)), device=self.device)
            return (x, y), (x, y)
        train, test = _user_data(dataset, self.cfg.folder)
        return (train[0].to(self.device), train[1].to(self.device)), (test[0].to(self.device), test[1].to(self.device))

    def data_identity(self, model: str) -> str:
        """A digest of the data ``model`` uses (its tensors)."""
        (xtr, ytr), (xte, yte) = self.data(model)
        if id(xtr) not in self._identity:  # the tensors live as long as the workspace: id() is stable
            self._identity[id(xtr)] = tensors_digest([xtr, ytr, xte, yte])
        return self._identity[id(xtr)]

    # -- models ---------------------------------------------------------------------
    def model_spec(self, name: str) -> Spec:
        return next(m for m in self.cfg.models if m.name == name)

    def model(self, name: str) -> Model:
        if name not in self.models:
            self.models[name] = self._build_model(self.model_spec(name))
        return self.models[name]

    def _build_model(self, spec: Spec) -> Model:
        from foolbench.models import LeNet, load_model

        p, what = spec.params, f"model {spec.name!r}"
        if spec.kind == "zoo":
            kwargs: dict[str, Any] = {"device": self.device}
            if "image_size" in p:
                kwargs["image_size"] = p["image_size"]
            try:
                clf = load_model(p["zoo"], **kwargs)
            except FoolbenchError as err:
                raise ConfigError(f"{what}: {err}") from None
            self._check_shape(spec.name, clf)
            factory = LeNet if p["zoo"] == "lenet-mnist" else None
            return Model(spec.name, clf, factory, tensors_digest(clf.module.state_dict()))
        fn = resolve(p["factory"], what, self.cfg.folder)
        module = self._fresh_module(fn, spec)
        clf = self._wrap(module, spec)
        if p.get("train_epochs"):
            self._train(module, clf, spec)
        # the architecture too: two factories' models with the same weights (a ReLU edited to a Sigmoid) differ
        return Model(spec.name, clf, fn, digest([tensors_digest(module.state_dict()), architecture(module)]))

    def _fresh_module(self, fn: Callable[..., Any], spec: Spec) -> nn.Module:
        p = spec.params
        with _checks.seeded_init(self.cfg.seed):
            module = _call(fn, p["factory"], f"model {spec.name!r}", int(p["num_classes"]))
        if not isinstance(module, nn.Module):
            raise ConfigError(
                f"model {spec.name!r}: factory {p['factory']!r} must return an nn.Module, got {type(module).__name__}"
            )
        return module.eval()

    def _wrap(self, module: nn.Module, spec: Spec) -> Any:
        from foolbench.models import TorchClassifier

        p = spec.params
        try:
            clf = TorchClassifier(
                module, input_shape=p["input_shape"], num_classes=int(p["num_classes"]),
                bounds=p.get("bounds", (0.0, 1.0)), mean=p.get("mean"), std=p.get("std"), device=self.device,
            )  # fmt: skip
            self._check_shape(spec.name, clf)
            clf.log_probs(self.data(spec.name)[1][0][:2])
        except ConfigError:
            raise
        except (RuntimeError, FoolbenchError) as err:
            raise ConfigError(f"model {spec.name!r}: factory {p['factory']!r} gives a bad model: {err}") from None
        return clf

    def _check_shape(self, name: str, clf: Any) -> None:
        x = self.data(name)[1][0]
        if tuple(x.shape[1:]) != tuple(clf.input_shape):
            raise ConfigError(
                f"model {name!r} takes inputs of shape {tuple(clf.input_shape)}, but its data has images of "
                f"shape {tuple(x.shape[1:])} (a model can take other data than the suite's: dataset = ... in its "
                "[[models]] entry)"
            )
        labels = torch.cat([self.data(name)[0][1], self.data(name)[1][1]])
        if labels.min() < 0 or labels.max() >= clf.num_classes:
            raise ConfigError(
                f"model {name!r} has {clf.num_classes} classes, but its data has labels in "
                f"[{int(labels.min())}, {int(labels.max())}] (a model can take other data than the suite's: "
                "dataset = ... in its [[models]] entry)"
            )

    def _device_kind(self) -> list[str]:
        """``[]`` on the CPU (keys as before), else the device's kind: another device trains other weights."""
        return device_kind(self.device)

    def _train(self, module: nn.Module, clf: Any, spec: Spec) -> None:
        from foolbench.models import train_classifier

        key = digest(
            [spec.params, self.cfg.seed, tensors_digest(module.state_dict()), architecture(module),
             self.data_identity(spec.name), *self._device_kind()]
        )  # fmt: skip
        cache = self.out / "models" / f"{file_key(spec.name)}-{key}.pt"
        state = None
        if cache.is_file() and not self.fresh:
            try:
                state = _io.load_torch(cache, what="trained model")
                module.load_state_dict(state["weights"])
            except (CheckpointError, KeyError, RuntimeError) as err:
                import warnings

                warnings.warn(f"retraining: cached model {str(cache)!r} is unusable: {err}", stacklevel=2)
                state = None
        if state is None:
            train_classifier(
                module, *self.data(spec.name)[0], epochs=int(spec.params["train_epochs"]), batch_size=64, lr=3e-3,
                max_shift=0, preprocess=clf.preprocess, seed=self.cfg.seed,
            )  # fmt: skip
            weights = {k: v.detach().cpu() for k, v in module.state_dict().items()}
            _io.save_torch(cache, {"digest": key, "weights": weights})
        module.eval()

    # -- defenses -------------------------------------------------------------------
    def defense_digest(self, model: str, defense: Spec) -> str:
        """What determines a defended model: the model's identity, the defense, its data and seed.

        A defense built from other models of the suite (an ensemble) adds their identities, in order.
        """
        m = self.model(model)
        parts = [
            m.identity,
            defense.kind,
            defense.params,
            self.cfg.seed,
            self.data_identity(model),
            *self._device_kind(),
        ]
        others = defense.build(DEFENSES).depends_on(model)
        return digest(parts + [[name, self.model(name).identity] for name in others] if others else parts)

    def target(self, model: str, defense: Spec) -> Target:
        """``model`` behind ``defense`` (retraining defenses resume from their checkpoint)."""
        if (model, defense.name) not in self._targets:
            for m in self.cfg.models:  # ensembles need every model
                self.model(m.name)
            key = f"{file_key(model, defense.name)}-{self.defense_digest(model, defense)}"
            scratch = self.out / "defenses" / key
            if self.fresh and scratch.exists():
                shutil.rmtree(scratch)
            scratch.mkdir(parents=True, exist_ok=True)
            train, test = self.data(model)
            ctx = Context(train, test, self.cfg.seed, self.device, scratch, models=self.models)
            self._targets[model, defense.name] = defense.build(DEFENSES).build(self.model(model), ctx)
        return self._targets[model, defense.name]
