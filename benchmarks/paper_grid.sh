#!/usr/bin/env bash
# The leaderboard's paper-preset runs: every (method, seed) as its own run with `--preset paper`
# (the embedded synthetic data unless the extra arguments name a dataset), JOBS at a time on one device. Small models on a GPU leave it idle
# between kernel launches, so separate processes fill it where one sequential run could not.
#
#   bash benchmarks/paper_grid.sh RESULTS [JOBS] [SECONDS] [extra `bench run` arguments...]
#
# The runs share each seed's T1 model through the T1 cache ($BENCH_T1_CACHE, default
# $BENCH_DATA/cache/t1): the first process to need it trains it, the others wait and load it.
# Run ids are <PAPER_GRID_NAME>-<method>-s<seed> (default name synthetic-paper); a run left
# unfinished (SECONDS reached, a crash) is resumed by the next call. Publish the finished ones with
#   python -m bench leaderboard --results RESULTS --publish $(cd RESULTS/runs && ls -d synthetic-paper-*)
# e.g. MovieLens-100K: PAPER_GRID_NAME=ml100k-paper bash benchmarks/paper_grid.sh results 16 0 \
#   --dataset movielens --data-dir DIR
set -u
results=${1:?usage: paper_grid.sh RESULTS [JOBS] [SECONDS] [bench run args...]}
jobs=${2:-16}
seconds=${3:-0}  # 0: no limit
shift $(( $# < 3 ? $# : 3 ))
# Longest first, so the slow methods never start last.
methods=${PAPER_GRID_METHODS:-"Conure HAT TERACON MTL PeterRec FineAll SinMoAll SinMo FineSmax DNN"}
seeds=${PAPER_GRID_SEEDS:-"0 1 2"}
mkdir -p "$results/logs"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
export GRID_NAME=${PAPER_GRID_NAME:-synthetic-paper} GRID_RESULTS=$results GRID_ARGS="$*"  # extra arguments: no spaces inside one

one_run() {  # method seed
    local id="$GRID_NAME-$1-s$2" start=$SECONDS args
    if [ -d "$GRID_RESULTS/runs/$id" ]; then args="--resume $id"
    else args="--preset paper --methods $1 --seed $2 --run-id $id"; fi
    # shellcheck disable=SC2086  # word splitting of the argument strings is intended
    python -m bench run --results "$GRID_RESULTS" --quiet $args $GRID_ARGS > "$GRID_RESULTS/logs/$id.log" 2>&1
    echo "$id rc=$? $((SECONDS - start))s"
}
export -f one_run

limit=()
[ "$seconds" -gt 0 ] && limit=(timeout "$seconds")
for method in $methods; do for seed in $seeds; do echo "$method $seed"; done; done |
    "${limit[@]}" xargs -P "$jobs" -L 1 bash -c 'one_run "$@"' _
