"""CPPN fooling images for a real ImageNet model (EfficientNet-Lite0, 224 x 224 colour).

Evolves regular, pattern-like images for a few texture classes with MAP-Elites and CPPN genomes,
for 90 seconds (10 with ``--fast``). Saves ``cppn_imagenet.png``; run longer for higher confidence
(``benchmarks/bench_cppn.py`` gives it 10 minutes).
"""

from __future__ import annotations

from _common import parse

import foolbench as fb

fast, out = parse(__doc__ or "")
clf = fb.models.efficientnet_lite0()
encoding = fb.encodings.CPPNEncoding((3, 224, 224))
classes = [646, 815, 794, 489]  # maze, spider web, shower curtain, chain-link fence
search = fb.search.MAPElites(clf, encoding, classes=classes, batch_size=16, seed=0)
result = search.run(max_seconds=10 if fast else 90, target_confidence=0.99, progress=False)
result.save_png(out / "cppn_imagenet.png")
print(result.to_markdown("CPPN images for EfficientNet-Lite0"))
