"""How much a CUDA graph could save in the direct-encoding loop (issue 14's host-bound row), on a GPU.

``python tools/gpu_graph_probe.py [BATCH ...]``: MAP-Elites + direct encoding on lenet_mnist at batch 1,024 and
8,192; per generation, the eager ``search._step()`` against a CUDA graph of the same step replayed,
and the bare forward. A timing probe only: a replayed step reads the archive tensors it was captured
with (the search's own step reassigns some), so the replays do not chain generations correctly; what
it measures is how much of a generation is host overhead a graph would remove.
"""

from __future__ import annotations

import sys

import torch
from gpu_probe import cuda_ms  # tools/ is on the path when this script runs

import foolbench as fb


def probe(batch: int) -> None:
    clf = fb.models.lenet_mnist(device="cuda")
    module, pre = clf.network(), clf.preprocess
    search = fb.search.MAPElites(clf, fb.search.MNIST_RECIPE.encoding((1, 28, 28)), batch_size=batch, seed=0)
    search.run(generations=20, progress=False)
    x = torch.rand(batch, 1, 28, 28, device="cuda")

    def bare() -> None:
        with torch.no_grad():
            torch.log_softmax(module(pre(x)), 1)

    eager, forward = cuda_ms(search._step), cuda_ms(bare)
    line = f"batch {batch:,}: eager step {eager:.3f} ms, bare forward {forward:.3f} ms"
    try:
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(search._rng)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                search._step()
        torch.cuda.current_stream().wait_stream(side)
        with torch.no_grad(), torch.cuda.graph(graph):
            search._step()
        replay = cuda_ms(graph.replay)
        line += f", graph replay {replay:.3f} ms: loop / bare forward {forward / eager:.2f} eager, {forward / replay:.2f} graphed"
    except Exception as exc:  # noqa: BLE001 - the probe reports what stops a capture
        line += f"; capture failed: {type(exc).__name__}: {str(exc)[:300]}"
    print(line, flush=True)


if __name__ == "__main__":
    # one batch size per process (``gpu_graph_probe.py 1024``): a failed capture can leave CUDA unusable
    print(f"{torch.cuda.get_device_name(0)}; torch {torch.__version__}", flush=True)
    for b in sys.argv[1:] or ["1024"]:
        probe(int(b))
