#!/usr/bin/env bash
# The GPU checks issue 18 leaves pending, in one go: the fused loss against the chunked
# reference (tests/test_gpu.py), then gpu_probe.py at the TTL shape (ms/step, implied T1
# epoch, fraction of the bf16 matmul bound, profiler summary), then optionally the paper grid
# with and without the T1 cache, and SASRec against NextItNet (train step and evaluation at
# d=64, L=20; tests/benchmarks/test_bench_backbones.py on the GPU). Needs liger-kernel
# installed (pip install -e ".[gpu]").
#
#   bash benchmarks/gpu_check.sh OUT_DIR [grid]     # ~5 min; with "grid" ~10 min more
set -u
out=${1:?usage: gpu_check.sh OUT_DIR [grid]}
mkdir -p "$out"
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
python -c "import liger_kernel" 2>/dev/null || echo "liger-kernel is not installed: the fused rows will say n/a" | tee "$out/warning.txt"
python -m pytest -q -rs tests/test_gpu.py 2>&1 | tee "$out/test_gpu.txt"
PYTHONPATH=. python benchmarks/gpu_probe.py --steps 10 --warmup 3 2>&1 | tee "$out/gpu_probe.md"
BENCH_BENCHMARK_DEVICE=cuda python -m pytest -q tests/benchmarks/test_bench_backbones.py --benchmark-enable \
    --benchmark-columns=mean,stddev,rounds --benchmark-json="$out/backbones.json" 2>&1 | tee "$out/backbones.txt"
if [ "${2:-}" = grid ]; then
    bash benchmarks/paper_grid_t1_cache.sh 16 2>&1 | tee "$out/paper_grid_t1_cache.md"
fi
