#!/usr/bin/env bash
# The GPU half of the performance study (issue 6), in one command, for a machine with a GPU:
#   bash scripts/gpu_benchmarks.sh [OUT_DIR]
# Writes one JSON per benchmark and a combined markdown file (OUT_DIR/gpu_benchmarks.md) to
# paste into docs/BENCHMARKS.md. Sizes come from the environment, so the same script runs a
# smoke test on CPU:
#   MODEL=convnext_atto SIZE=32 BATCH=8 ROUNDS=1 STEPS=1 TORCH_FLAGS=--torch COMPILE_DEPTHS=3 \
#   DW_IMPLS="lax ffi" DATA_IMAGES=64 DATA_WORKER_COUNTS="1 2" DATA_EPOCHS=1 bash scripts/gpu_benchmarks.sh /tmp/gpu_smoke
# Every benchmark runs under `timeout $SECTION_TIMEOUT` (seconds; a failed or timed-out one is
# noted in the markdown and the rest still run), and none starts once DEADLINE seconds have
# passed since the script began (for leased GPU time). Most informative first.
set -uo pipefail
PY=${PYTHON:-python3}
OUT=${1:-runs/gpu_benchmarks}
MODEL=${MODEL:-convnext_tiny}
SIZE=${SIZE:-224}
BATCH=${BATCH:-128}
ROUNDS=${ROUNDS:-4}
STEPS=${STEPS:-10}
DW_IMPLS=${DW_IMPLS:-lax lax_vjp shift}   # 'ffi' is CPU-only; lax_vjp: jax#13800's backward avoided
DWBENCH_IMPLS=${DWBENCH_IMPLS:-$DW_IMPLS}  # the depthwise-conv micro-benchmark's (cheap: can list more)
TORCH_FLAGS=${TORCH_FLAGS:---torch --torch_compile}
COMPILE_DEPTHS=${COMPILE_DEPTHS:-3 12 48}
TORCH_INFER_FLAGS=${TORCH_INFER_FLAGS:-$TORCH_FLAGS}
REMATS=${REMATS:-none full dots}
REMAT_SCAN=${REMAT_SCAN:-true false}
SECTION_TIMEOUT=${SECTION_TIMEOUT:-1800}
DEADLINE=${DEADLINE:-86400}
DATA_WORKERS=${DATA_WORKERS:-$($PY -c "import os; print(min(len(os.sched_getaffinity(0)), 16))")}
DATA_WORKER_COUNTS=${DATA_WORKER_COUNTS:-}  # e.g. "1 2 4 8 16"; default 1..DATA_WORKERS
JOB_IMAGES=${JOB_IMAGES:-1024}   # the end-to-end job: the ImageNet recipe on this many imagenet-like JPEGs
JOB_EPOCHS=${JOB_EPOCHS:-4}
SKIP=${SKIP:-}                   # benchmark names to leave out, e.g. "train_fp32 compile"
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
mkdir -p "$OUT"
MD="$OUT/gpu_benchmarks.md"
: > "$MD"
skipped() {  # skipped NAME: true (and noted) when NAME is in SKIP or the DEADLINE has passed
  if [[ " $SKIP " == *" $1 "* ]]; then echo "### $1: skipped (SKIP)" | tee -a "$MD"; return 0; fi
  if (( SECONDS > DEADLINE )); then echo "### $1: skipped (DEADLINE ${DEADLINE}s passed)" | tee -a "$MD"; return 0; fi
  return 1
}
run() {  # run NAME ARGS...: the command, its table and its JSON
  local name=$1; shift
  skipped "$name" && return
  echo "### $name" | tee -a "$MD"
  echo "\`python -m convnext_jax.bench $*\`" >> "$MD"
  local start=$SECONDS
  timeout "$SECTION_TIMEOUT" $PY -m convnext_jax.bench "$@" --json "$OUT/$name.json" 2>"$OUT/$name.err" | tee -a "$MD"
  local rc=${PIPESTATUS[0]}
  tail -n 3 "$OUT/$name.err" >&2
  if (( rc != 0 )); then echo "**failed (exit $rc)**: $(tail -n 1 "$OUT/$name.err")" | tee -a "$MD"; fi
  echo "($((SECONDS - start)) s)" >> "$MD"
  echo >> "$MD"
}
$PY -c "import jax; print('backend:', jax.default_backend(), jax.devices())" | tee -a "$MD"
# Depthwise conv formulations at the model's four stage shapes (which one 'auto' should pick).
run dwconv dwconv --batch_size "$BATCH" --sizes $((SIZE / 4)) $((SIZE / 8)) $((SIZE / 16)) $((SIZE / 32)) \
  --impls $DWBENCH_IMPLS
# Train step, bf16 compute (fp32 params), against timm with AMP + channels_last, eager and compiled.
run train_bf16 train --model "$MODEL" --image_size "$SIZE" --batch_size "$BATCH" --dtype bfloat16 \
  --dwconv_impl $DW_IMPLS $TORCH_FLAGS --rounds "$ROUNDS" --steps "$STEPS"
# Rematerialisation policies side by side in one process (step time vs peak memory); scan vs unrolled.
run remat train --model "$MODEL" --image_size "$SIZE" --batch_size "$BATCH" --dtype bfloat16 \
  --scan $REMAT_SCAN --remat $REMATS --rounds "$ROUNDS" --steps "$STEPS"
# The main job end to end: the ConvNeXt ImageNet recipe (RandAugment, erasing, mixup/cutmix, EMA)
# on imagenet-like JPEGs, with its own data-wait report (summary.json).
train_job() {
  skipped train_job && return
  echo "### train_job" | tee -a "$MD"
  local root="$SCRATCH/job_data" start=$SECONDS
  $PY -c "from convnext_jax.bench.data_bench import make_imagenet_like as m; m('$root', $JOB_IMAGES)"
  ln -s train "$root/val"
  local cmd=(-m convnext_jax.main --config "configs/imagenet_recipe.py:$MODEL" --workdir "$SCRATCH/job"
             --config.data.source="folder:$root" --config.data.image_size="$SIZE" --config.model.num_classes=8
             --config.batch_size="$BATCH" --config.num_epochs="$JOB_EPOCHS" --config.optim.warmup_epochs=1
             --config.log_every=5 --config.compile_cache=off)
  echo "\`python ${cmd[*]}\` ($JOB_IMAGES images)" >> "$MD"
  timeout "$SECTION_TIMEOUT" $PY "${cmd[@]}" > "$OUT/train_job.log" 2>&1
  local rc=$?
  tail -n 4 "$OUT/train_job.log" >&2
  if (( rc != 0 )); then echo "**failed (exit $rc)**: $(tail -n 1 "$OUT/train_job.log")" | tee -a "$MD"; fi
  $PY - "$SCRATCH/job/summary.json" <<'PYEOF' | tee -a "$MD"
import json, sys
try:
    s = json.load(open(sys.argv[1]))
except OSError:
    sys.exit(0)
print("| " + " | ".join(k for k in ("img_per_s", "compile_s", "data_wait_fraction", "skipped_images") if k in s) + " |")
print("|" + "---|" * sum(k in s for k in ("img_per_s", "compile_s", "data_wait_fraction", "skipped_images")))
print("| " + " | ".join(f"{s[k]:.4g}" if isinstance(s[k], float) else str(s[k])
                        for k in ("img_per_s", "compile_s", "data_wait_fraction", "skipped_images") if k in s) + " |")
PYEOF
  echo "($((SECONDS - start)) s)" >> "$MD"
  echo >> "$MD"
}
train_job
# Input pipeline on this machine's cores: ours (threads, processes, prepared) vs torchvision + timm.
run data data --images "${DATA_IMAGES:-512}" --workers "$DATA_WORKERS" ${DATA_WORKER_COUNTS:+--worker_counts $DATA_WORKER_COUNTS} \
  --epochs "${DATA_EPOCHS:-3}" --torch --prepared_max_size 320 --pil_ops
run infer_bf16 infer --model "$MODEL" --image_size "$SIZE" --batch_size "$BATCH" --dtype bfloat16 \
  --dwconv_impl $DW_IMPLS $TORCH_INFER_FLAGS --rounds "$ROUNDS" --steps "$STEPS"
run train_fp32 train --model "$MODEL" --image_size "$SIZE" --batch_size "$BATCH" --dtype float32 \
  --torch --rounds "$ROUNDS" --steps "$STEPS"
run compile compile --depths $COMPILE_DEPTHS
echo "wrote $MD"
