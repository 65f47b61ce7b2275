#!/usr/bin/env bash
# The GPU half of the performance study (issue 6), in one command, for a machine with a GPU:
#   bash scripts/gpu_benchmarks.sh [OUT_DIR]
# Writes one JSON per benchmark and a combined markdown file (OUT_DIR/gpu_benchmarks.md) to
# paste into docs/BENCHMARKS.md. Sizes come from the environment, so the same script runs a
# smoke test on CPU:
#   MODEL=convnext_atto SIZE=32 BATCH=8 ROUNDS=1 STEPS=1 TORCH_FLAGS=--torch COMPILE_DEPTHS=3 \
#   DW_IMPLS="lax ffi" DATA_IMAGES=64 bash scripts/gpu_benchmarks.sh /tmp/gpu_smoke
set -euo pipefail
OUT=${1:-runs/gpu_benchmarks}
MODEL=${MODEL:-convnext_tiny}
SIZE=${SIZE:-224}
BATCH=${BATCH:-128}
ROUNDS=${ROUNDS:-4}
STEPS=${STEPS:-10}
DW_IMPLS=${DW_IMPLS:-lax lax_vjp shift}   # 'ffi' is CPU-only; lax_vjp: jax#13800's backward avoided
TORCH_FLAGS=${TORCH_FLAGS:---torch --torch_compile}
COMPILE_DEPTHS=${COMPILE_DEPTHS:-3 12 48}
mkdir -p "$OUT"
MD="$OUT/gpu_benchmarks.md"
: > "$MD"
run() {  # run NAME ARGS...: the command, its table and its JSON
  local name=$1; shift
  echo "### $name" | tee -a "$MD"
  echo "\`python -m convnext_jax.bench $*\`" >> "$MD"
  python -m convnext_jax.bench "$@" --json "$OUT/$name.json" | tee -a "$MD"
  echo >> "$MD"
}
python -c "import jax; print('backend:', jax.default_backend(), jax.devices())" | tee -a "$MD"
# Depthwise conv formulations at the model's four stage shapes (which one 'auto' should pick).
run dwconv dwconv --batch_size "$BATCH" --sizes $((SIZE / 4)) $((SIZE / 8)) $((SIZE / 16)) $((SIZE / 32)) \
  --impls $DW_IMPLS
# Train step, bf16 compute (fp32 params), against timm with AMP + channels_last, eager and compiled.
run train_bf16 train --model "$MODEL" --image_size "$SIZE" --batch_size "$BATCH" --dtype bfloat16 \
  --dwconv_impl $DW_IMPLS $TORCH_FLAGS --rounds "$ROUNDS" --steps "$STEPS"
run train_fp32 train --model "$MODEL" --image_size "$SIZE" --batch_size "$BATCH" --dtype float32 \
  --torch --rounds "$ROUNDS" --steps "$STEPS"
# Rematerialisation policies vs step time and peak memory; scan vs unrolled.
for remat in none full dots; do
  run "remat_$remat" train --model "$MODEL" --image_size "$SIZE" --batch_size "$BATCH" --dtype bfloat16 \
    --scan true false --remat "$remat" --rounds "$ROUNDS" --steps "$STEPS"
done
run infer_bf16 infer --model "$MODEL" --image_size "$SIZE" --batch_size "$BATCH" --dtype bfloat16 \
  --dwconv_impl $DW_IMPLS $TORCH_FLAGS --rounds "$ROUNDS" --steps "$STEPS"
run compile compile --depths $COMPILE_DEPTHS
# Input pipeline on this machine's cores: ours (threads, processes, prepared) vs torchvision + timm.
DATA_WORKERS=${DATA_WORKERS:-$(python -c "import os; print(min(len(os.sched_getaffinity(0)), 16))")}
run data data --images "${DATA_IMAGES:-512}" --workers "$DATA_WORKERS" --torch --prepared_max_size 320
echo "wrote $MD"
