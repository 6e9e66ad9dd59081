#!/usr/bin/env bash
# Where to edit: the same MEND recipe on six choices of edited weights, for notebook 11.
# Every editor: rank 64, 600 steps, 20 targets per training fact, three locality texts per training
# edit (the shipped recipe's data settings at a smaller budget); one per choice and seed, written to
# checkpoints/where-to-edit/<choice>-s<seed> (its run folder: runs/where-to-edit-<choice>-s<seed>).
# Usage: bash experiments/where-to-edit/run.sh [JOBS] [SEED ...]
#   JOBS editors train at a time (default 2); seeds default to 1 2. About 5 minutes per editor on
#   one core of the machine in docs/benchmarks.md, so ~30 minutes for the default on two cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
jobs=${1:-2}
shift || true
seeds=("$@")
[ ${#seeds[@]} -eq 0 ] && seeds=(1 2)
common=(--rank 64 --steps 600 --patience 600 --time-budget 3600 --per-fact 20 --loc-per-edit 3 --force)
mlp() { local s=""; for b in "$@"; do s+="h.$b.mlp.c_fc.weight,h.$b.mlp.c_proj.weight,"; done; echo "${s%,}"; }
attn() { local s=""; for b in "$@"; do s+="h.$b.attn.c_attn.weight,h.$b.attn.c_proj.weight,"; done; echo "${s%,}"; }
declare -A choice=(
  [mlp-last-1]="$(mlp 3)"
  [mlp-last-2]="$(mlp 2 3)"
  [mlp-last-3]="$(mlp 1 2 3)"
  [mlp-all-4]="$(mlp 0 1 2 3)"
  [mlp-first-2]="$(mlp 0 1)"
  [attn-last-3]="$(attn 1 2 3)"
)
run() {
  local name=$1 seed=$2 inner=$3
  node bin/mend.js train-editor --inner-params "$inner" --seed "$seed" --out "checkpoints/where-to-edit/$name-s$seed" \
    --run-dir "runs/where-to-edit-$name-s$seed" "${common[@]}" > "runs/where-to-edit-$name-s$seed.log" 2>&1
  echo "trained $name, seed $seed"
}
mkdir -p runs
i=0
for seed in "${seeds[@]}"; do
  for name in $(printf '%s\n' "${!choice[@]}" | sort); do
    run "$name" "$seed" "${choice[$name]}" &
    i=$((i + 1))
    if (( i % jobs == 0 )); then wait; fi
  done
done
wait
