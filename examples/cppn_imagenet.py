"""CPPN fooling images for a real ImageNet model (EfficientNet-Lite0, 224 x 224 colour).

Evolves regular, pattern-like images for ten texture-like classes with MAP-Elites and CPPN
genomes, for 6 minutes (10 seconds with ``--fast``). Saves ``cppn_imagenet.png``. On a 2-core CPU six
minutes is a short run for 224 x 224 colour images: give it longer (``--minutes``), or a GPU, for
higher confidence. Run ``python cppn_imagenet.py --out out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import foolbench as fb

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--fast", action="store_true", help="small budgets (CI runs every example this way)")
parser.add_argument("--out", type=Path, default=Path("out"), help="folder for the figure")
parser.add_argument("--minutes", type=float, default=6.0, help="search time without --fast")
args = parser.parse_args()
args.out.mkdir(parents=True, exist_ok=True)

clf = fb.models.efficientnet_lite0()
encoding = fb.encodings.CPPNEncoding((3, 224, 224))
# spider web, chain-link fence, maze, street sign, jigsaw puzzle, fire screen, window screen, prayer rug,
# doormat, chain
classes = [815, 489, 646, 919, 611, 556, 904, 741, 539, 488]
search = fb.search.MAPElites(clf, encoding, classes=classes, batch_size=16, seed=0)
result = search.run(max_seconds=10 if args.fast else 60 * args.minutes, target_confidence=0.99, progress=False)
result.save_png(args.out / "cppn_imagenet.png", columns=5)
print(result.to_markdown("CPPN images for EfficientNet-Lite0"))
