"""Ray scale-out on this machine: ``python benchmarks/bench_ray.py [--quick]`` (needs ``foolbench[ray]``).

Prints, side by side in one run:
- MAP-Elites on lenet_mnist, direct and CPPN encodings: evaluations/s with the in-process
  LocalEvaluator (torch using every core) and with RayEvaluator over 1 and 2 local workers
  (one thread each), the bytes sent and received per generation, and whether the results are equal;
- a suite of equal CPU cells run locally and with the Ray executor on 2 workers (speedup).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

import foolbench as fb

sys.path.insert(0, str(Path(__file__).parent))


def search_rate(
    clf: fb.models.TorchClassifier, enc: object, evaluator: object, *, batch: int, generations: int
) -> tuple[float, fb.search.FoolingResult]:
    s = fb.search.MAPElites(clf, enc, batch_size=batch, seed=0, evaluator=evaluator)  # type: ignore[arg-type]
    s.step()  # generation 0 (and worker warm-up) outside the timing
    t = time.perf_counter()
    s.run(generations=generations + 1, progress=False)
    dt = time.perf_counter() - t
    return batch * generations / dt, s.result()


def evaluators(quick: bool) -> None:
    from foolbench.distributed import RayEvaluator

    clf = fb.models.lenet_mnist()
    gens = 5 if quick else 30
    for name, enc, batch in [
        ("direct", fb.encodings.DirectEncoding((1, 28, 28), mutation_rate=0.02, eta=1.0), 1024),
        ("cppn", fb.encodings.CPPNEncoding((1, 28, 28)), 1024),
    ]:
        torch.set_num_threads(2)
        local_rate, _ = search_rate(clf, enc, None, batch=batch, generations=gens)
        print(f"{name} batch {batch}: LocalEvaluator (2 threads) {local_rate:,.0f} eval/s")
        for workers in (1, 2):
            with RayEvaluator("foolbench.models:lenet_mnist", enc, num_workers=workers, threads=1) as remote:
                rate, res = search_rate(clf, enc, remote, batch=batch, generations=gens)
                sent = remote.bytes_sent / remote.batches
                received = remote.bytes_received / remote.batches
            torch.set_num_threads(1)
            _, ref = search_rate(clf, enc, None, batch=batch, generations=gens)
            same = torch.equal(res.images, ref.images)
            print(
                f"{name} batch {batch}: RayEvaluator {workers} worker(s) x 1 thread {rate:,.0f} eval/s "
                f"({rate / local_rate:.2f}x local); per generation {sent / 1e3:,.1f} kB sent, "
                f"{received / 1e3:,.1f} kB received; equal to a 1-thread local run: {same}"
            )
    torch.set_num_threads(2)


def suite(quick: bool) -> None:
    from foolbench.distributed import RayExecutor

    cells = 8
    toml = f"""
[suite]
name = "ray-bench"
seed = 0

[data]
dataset = "mnist"
train = 1000
test = 200

[[models]]
name = "lenet"
zoo = "lenet-mnist"

{
        "".join(
            f'''
[[methods]]
name = "evolve-{i}"
kind = "map-elites"
encoding = "direct"
max_evaluations = {2_000 if quick else 12_000}
batch_size = 64
'''
            for i in range(cells)
        )
    }
"""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "suite.toml"
        cfg.write_text(toml)
        torch.set_num_threads(1)
        t = time.perf_counter()
        local = fb.bench.run_suite(cfg, out=Path(tmp) / "local", progress=False)
        t_local = time.perf_counter() - t
        t = time.perf_counter()
        remote = fb.bench.run_suite(
            cfg, out=Path(tmp) / "ray", progress=False, executor=RayExecutor(num_cpus=1, threads=1)
        )
        t_ray = time.perf_counter() - t
        torch.set_num_threads(2)

    def values(res: dict[str, object]) -> list[dict[str, object]]:
        timeless = {"seconds", "wall_seconds"}
        return [{k: v for k, v in c["metrics"].items() if k not in timeless} for c in res["cells"]]  # type: ignore[attr-defined]

    same = values(local) == values(remote)
    print(
        f"suite of {cells} equal cells: local (1 thread) {t_local:.1f} s, Ray 2 workers x 1 thread {t_ray:.1f} s, "
        f"speedup {t_local / t_ray:.2f}x; same results: {same}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--part", choices=["all", "evaluator", "suite"], default="all")
    args = parser.parse_args()
    ray = fb.distributed.connect("local", num_cpus=2)
    print(f"torch {torch.__version__}, ray {ray.__version__}, {os.cpu_count()} CPUs, cpu")
    if args.part in ("all", "evaluator"):
        evaluators(args.quick)
    if args.part in ("all", "suite"):
        suite(args.quick)
    ray.shutdown()


if __name__ == "__main__":
    main()
