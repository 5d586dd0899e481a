#!/usr/bin/env bash
# Train the shipped `tiny` checkpoints (mobilecodec/checkpoints/tiny_b<beta>.pt) with the resumable
# `tiny-cpu` recipe (mobilecodec/train/recipe.py: I-frame codec, P-frame networks, stage-2 rollout,
# one fine-tuning per extra beta) on the default training data: bikes, bigbuckbunny and still
# images with synthetic motion. carphone, the held-out evaluation clip, is never used.
#
# Rerunning continues from the last checkpoint of the unfinished phase. When every phase is done
# the rate points are copied into the package's checkpoint folder.
#
#   scripts/train_shipped.sh                       # 2-core CPU, 1 torch thread (leaves a core free)
#   THREADS=2 scripts/train_shipped.sh
#   EXTRA="--device cuda --batch-scale 8" scripts/train_shipped.sh
set -euo pipefail

cd "$(dirname "$0")/.."
MC=${MC:-.venv/bin/mobilecodec}
RUN=${RUN:-training/tiny-cpu}
THREADS=${THREADS:-1}
SHIP_DIR=${SHIP_DIR:-mobilecodec/checkpoints}

# shellcheck disable=SC2086  # EXTRA holds several options
"$MC" train --recipe tiny-cpu -o "$RUN" --threads "$THREADS" --json "$RUN/recipe.json" ${EXTRA:-}
if ! grep -q '"complete": true' "$RUN/recipe.json"; then
  echo "recipe not finished yet; run this script again to continue" >&2
  exit 0
fi
mkdir -p "$SHIP_DIR"
for f in "$RUN"/results/tiny_b*.pt; do
  cp "$f" "$SHIP_DIR/$(basename "$f").tmp" && mv "$SHIP_DIR/$(basename "$f").tmp" "$SHIP_DIR/$(basename "$f")"
done
ls -la "$SHIP_DIR"
