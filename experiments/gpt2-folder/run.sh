#!/usr/bin/env bash
# The paper's comparison on a Hugging Face GPT-2 folder: MEND, KE and ENN meta-trained on the zsRE
# excerpt in data/, then MEND, KE, ENN, the cache, FT and FT+KL evaluated on zsRE (the paper's
# metrics) and CounterFact (ROME's metrics), single edits of the first LIMIT records.
# Usage: bash experiments/gpt2-folder/run.sh [MODEL_DIR] [STEPS] [LIMIT]
#   MODEL_DIR: a GPT-2 folder (config.json, model.safetensors, tokenizer files), e.g. a downloaded
#   distilgpt2; without one, a random tiny GPT-2 is generated (its numbers then only show that every
#   method runs: a random model knows no facts). STEPS: training steps per editor (default 200).
#   LIMIT: edits evaluated per dataset (default 50; the editors train on the zsRE records after them).
#   Everything goes to runs/gpt2-folder/.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=runs/gpt2-folder
model=${1:-$out/random-gpt2}
steps=${2:-200}
limit=${3:-50}
mkdir -p "$out"
if [ ! -f "$model/config.json" ]; then
  [ -n "${1:-}" ] && { echo "no GPT-2 folder at $model" >&2; exit 1; }
  node bin/mend.js random-gpt2 --out "$model" --seed 1
fi
zsre=zsre:data/zsre/zsre_mend_train-800.json
# the editors train on the records after the first LIMIT, which are the ones evaluated
node -e 'const fs=require("fs");const [src,dst,n]=process.argv.slice(1);fs.writeFileSync(dst,JSON.stringify(JSON.parse(fs.readFileSync(src,"utf8")).slice(+n)))' \
  data/zsre/zsre_mend_train-800.json "$out/zsre-train.json" "$limit"
for kind in MEND KE ENN; do
  if [ ! -f "$out/$kind/editor/config.json" ]; then
    # ENN holds a copy of the model, the frozen original and their Adam state: 2 calls per step fit wasm's 4 GB, the default 10 do not
    extra=(); [ "$kind" = ENN ] && extra=(--lr 1e-5 --accumulate 2)
    node bin/mend.js train-editor --model "$model" --kind "$kind" --data "zsre:$out/zsre-train.json" --run-dir "$out/$kind" \
      --steps "$steps" --patience "$steps" --time-budget 3600 --seed 1 "${extra[@]}" > "$out/$kind.log" 2>&1
    echo "trained $kind ($out/$kind.log)"
  fi
done
for data in "$zsre" counterfact:data/counterfact/counterfact_rome-200.json; do
  name=${data%%:*}
  node bin/mend.js eval --model "$model" --data "$data" --methods MEND,KE,ENN,cache,FT,FT+KL \
    --editor "$out/MEND/editor" --ke "$out/KE/editor" --enn "$out/ENN/editor" --limit "$limit" \
    --out "$out/eval-$name" --force
done
