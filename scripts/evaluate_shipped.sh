#!/usr/bin/env bash
# The figures of the README and docs/results/ that depend on the shipped `tiny` checkpoints, measured again in one
# run (issue #13 item 6 and its acceptance; issue #12's drift curves): run it after
# `scripts/train_shipped.sh` has replaced them. Not here (their commands are named beside them in
# docs/results/): the IPPP anchors (`baseline --intra-period 32`) and their BD-rates, the windowed drift
# figures (`scripts/drift_windows.py`), `check-int8 --backend onnxruntime`; and its packages' PTQ calibrates
# on CALIB (bikes bigbuckbunny), where the README's package rows came from `ptq --data bikes`.
#
#   1. RD on held-out carphone (all 120 frames, intra period 32, real file bits, every frame
#      hash-verified), per-P-frame drift and PSNR-YUV - PSNR-RGB per point (`mobilecodec eval`);
#   2. x264 / x265 medium on the same clip, swept over CRFs wide enough to overlap our qualities,
#      and the BD-rates (pchip) of our curve against each;
#   3. the same on bikes (a training clip: reported as such) and on the first 16 frames of
#      bigbuckbunny (colour); then the clips of REFINE_CLIPS (carphone) once more with the encoder's
#      latent refinement (`--refine REFINE`, 100 steps; REFINE=0 skips it): same decoder, same
#      stream format, about 7 s per carphone frame and checkpoint on one core (13-15 min a checkpoint);
#      and the clips of MODES_CLIPS (carphone) with the P-frame block modes (`--block-modes MODES`,
#      8; MODES=0 skips them), alone and, unless REFINE=0, with the refinement too (20 min a
#      checkpoint): the headline rows of docs/results/rd.md;
#   4. int8: PTQ W8A8 and W8A16-receiver of every checkpoint, QAT of the W8A8 PTQ, each judged by
#      `mobilecodec check-int8` against float on carphone. Calibration and QAT use training clips
#      only (CALIB), never carphone. Unless MODES=0, the two PTQ kinds once more as deployed: judged
#      with `--block-modes MODES`, and exported as packages (at carphone's size) whose own graphs
#      code carphone on onnxruntime CPU (`mobilecodec eval --package`), with their BD-rates;
#   5. the cross-backend drift of DRIFT_CKPT, the parity tests' checkpoint: float ONNX vs PyTorch,
#      int8 vs the aimet simulation, QNN HTP vs onnxruntime CPU; frame by frame over 32 frames
#      (`scripts/drift_sources.py`).
#
# Every step writes its JSON under OUT and is skipped when that JSON exists, so an interrupted run
# continues. STEPS picks the parts (default rd,int8,drift: steps 1-3, 4 and 5), e.g. STEPS=int8. Small settings for a dry run: FRAMES=3 INTRA=2 BIKES_FRAMES=3 BBB_FRAMES=2
# CRFS=38,51 PTQ_STEPS=1 QAT_STEPS=1 DRIFT_FRAMES=3 REFINE=2 CHECKPOINTS=tiny_b0.0064,tiny_b0.0512 OUT=/tmp/ev
# scripts/evaluate_shipped.sh
set -euo pipefail

cd "$(dirname "$0")/.."
MC=${MC:-.venv/bin/mobilecodec}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-out/evaluate_shipped}
FRAMES=${FRAMES:-120}          # carphone has 120
INTRA=${INTRA:-32}
CRFS=${CRFS:-23,28,33,38,43,48,51}
CALIB=${CALIB:-"bikes bigbuckbunny"}
PTQ_STEPS=${PTQ_STEPS:-30}
REFINE=${REFINE:-100}         # latent refinement steps of the refined-encoder rows (0: none)
REFINE_CLIPS=${REFINE_CLIPS:-carphone}
MODES=${MODES:-8}             # block size of the block-mode rows (0: none)
MODES_CLIPS=${MODES_CLIPS:-carphone}
QAT_STEPS=${QAT_STEPS:-40}
STEPS=${STEPS:-rd,int8,drift}
for part in ${STEPS//,/ }; do
  [[ $part == rd || $part == int8 || $part == drift ]] || { echo "STEPS: unknown part '$part' (rd, int8, drift)" >&2; exit 2; }
done
want() { [[ ",$STEPS," == *",$1,"* ]]; }
if [[ -n ${CHECKPOINTS:-} ]]; then   # a subset, e.g. for a dry run: CHECKPOINTS=tiny_b0.0064,tiny_b0.0512
  SHIPPED=$(tr , '\n' <<< "$CHECKPOINTS")
else
  SHIPPED=$(ls mobilecodec/checkpoints/tiny_b*.pt | xargs -n1 basename | sed 's/\.pt$//' | sort -t b -k2 -g)
fi
CKPTS=$(echo "$SHIPPED" | paste -sd, -)
DRIFT_CKPT=${DRIFT_CKPT:-tiny_b0.0064}   # the checkpoint of tests/test_parity_gop.py, whose docstrings quote these curves
mkdir -p "$OUT"
echo "checkpoints: $CKPTS (drift: $DRIFT_CKPT); output: $OUT"

# step NAME JSON CMD...: run CMD unless JSON exists; its output goes to OUT/NAME.log.
step() {
  local name=$1 json=$2 t0
  shift 2
  if [[ -f "$json" ]]; then
    echo "skip $name ($json exists)"
    return 0
  fi
  t0=$(date +%s)
  echo "run  $name: $*"
  "$@" > "$OUT/$name.log" 2>&1 || { echo "$name failed, see $OUT/$name.log" >&2; return 1; }
  echo "done $name in $(( $(date +%s) - t0 )) s"
}

# 1-3. RD, anchors, BD-rates -------------------------------------------------------------------------
anchors() {  # clip frames: x264 / x265 medium over CRFS -> OUT/rd_CLIP/{x264,x265}.json (step 2; the
  # int8 packages' RD of step 4 needs them too, also when STEPS=int8 runs alone)
  local clip=$1 frames=$2 d="$OUT/rd_$1"
  for codec in x264 x265; do
    step "${clip}_$codec" "$d/${codec}.json" "$MC" baseline "$clip" --codec "$codec" --preset medium \
      --crf "$CRFS" --frames "$frames" -o "$d/anchors" --json "$d/${codec}.json" --no-progress
  done
}

clip_rd() {  # clip frames intra
  local clip=$1 frames=$2 intra=$3 d="$OUT/rd_$1"
  anchors "$clip" "$frames"
  step "${clip}_eval" "$d/eval.json" "$MC" eval "$clip" --checkpoint "$CKPTS" --frames "$frames" \
    --intra-period "$intra" --anchor "$d/x264.json" -o "$d/eval" --json "$d/eval.json" --no-progress
  bd_rates "$d" eval
  if [[ $REFINE != 0 && " $REFINE_CLIPS " == *" $clip "* ]]; then
    step "${clip}_eval_refined" "$d/eval_refined.json" "$MC" eval "$clip" --checkpoint "$CKPTS" \
      --frames "$frames" --intra-period "$intra" --refine "$REFINE" --anchor "$d/x264.json" -o "$d/eval_refined" \
      --json "$d/eval_refined.json" --no-progress
    bd_rates "$d" eval_refined
  fi
  if [[ $MODES != 0 && " $MODES_CLIPS " == *" $clip "* ]]; then
    step "${clip}_eval_modes" "$d/eval_modes.json" "$MC" eval "$clip" --checkpoint "$CKPTS" \
      --frames "$frames" --intra-period "$intra" --block-modes "$MODES" --anchor "$d/x264.json" \
      -o "$d/eval_modes" --json "$d/eval_modes.json" --no-progress
    bd_rates "$d" eval_modes
    if [[ $REFINE != 0 ]]; then
      step "${clip}_eval_modes_refined" "$d/eval_modes_refined.json" "$MC" eval "$clip" --checkpoint "$CKPTS" \
        --frames "$frames" --intra-period "$intra" --block-modes "$MODES" --refine "$REFINE" \
        --anchor "$d/x264.json" -o "$d/eval_modes_refined" --json "$d/eval_modes_refined.json" --no-progress
      bd_rates "$d" eval_modes_refined
    fi
  fi
}

bd_rates() {  # FOLDER NAME: BD-rates of FOLDER/NAME.json against the anchors -> FOLDER/bd[_refined].json
  "$PY" - "$1" "$2" <<'EOF'
import json, sys
from pathlib import Path

from mobilecodec.evaluate import bd_against
from mobilecodec.rdresults import payload_rates
from mobilecodec.fsutil import write_json_atomic

d, name = Path(sys.argv[1]), sys.argv[2]
ours = json.loads((d / f"{name}.json").read_text())["results"][0]["result"]
out = {}
for codec in ("x264", "x265"):
    anchor = json.loads((d / f"{codec}.json").read_text())
    anchor = anchor.get("result", anchor)
    out[codec] = bd_against(anchor, ours)
    # the same without containers: our payloads against the x264 / x265 packets
    out[f"{codec}_payload"] = bd_against(payload_rates(anchor), payload_rates(ours))
    for key, what in ((codec, "files"), (f"{codec}_payload", "payloads vs packets")):
        print(f"{d.name} {name}: BD-rate against {codec} medium ({what}): {out[key]['bd_rate']} {out[key]['error'] or ''}")
write_json_atomic(d / f"bd{name.removeprefix('eval')}.json", out)
EOF
}
if want rd; then
  clip_rd carphone "$FRAMES" "$INTRA"
  clip_rd bikes "${BIKES_FRAMES:-30}" "${BIKES_INTRA:-30}"   # scene cut at frame 30
  clip_rd bigbuckbunny "${BBB_FRAMES:-16}" "${BBB_INTRA:-16}"
fi

# 4. int8 ----------------------------------------------------------------------------------------------
# shellcheck disable=SC2086  # CALIB holds several clips
want int8 && for name in $SHIPPED; do
  q="$OUT/int8/$name"
  step "ptq_w8a8_$name" "$q/w8a8.json" "$MC" ptq --checkpoint "$name" --data $CALIB -o "$q/w8a8" \
    --steps "$PTQ_STEPS" --gop 3 --batch 2 --crop 128x128 --json "$q/w8a8.json" --no-progress
  step "ptq_w8a16rx_$name" "$q/w8a16rx.json" "$MC" ptq --checkpoint "$name" --data $CALIB -o "$q/w8a16rx" \
    --w8a16 receiver --steps "$PTQ_STEPS" --gop 3 --batch 2 --crop 128x128 --json "$q/w8a16rx.json" --no-progress
  step "qat_w8a8_$name" "$q/qat8.json" "$MC" qat --checkpoint "$q/w8a8" --data $CALIB -o "$q/qat8" \
    --steps "$QAT_STEPS" --gop 8 --batch 1 --crop 128x128 --lr 2e-6 --no-range-learning --json "$q/qat8.json" \
    --no-progress
done
# int8_dirs KIND: every checkpoint's OUT/int8/<checkpoint>/KIND folder, comma-separated
int8_dirs() {
  local d
  d=$(for name in $SHIPPED; do printf '%s,' "$OUT/int8/$name/$1"; done)
  echo "${d%,}"
}

# check_int8 NAME KIND [ARGS...]: check-int8 of the KIND folders against float on carphone ->
# OUT/int8/NAME.json; exit 1 (FAIL) and 3 (INCONCLUSIVE) are verdicts, not errors: the report says which
check_int8() {
  local name=$1 kind=$2
  shift 2
  step "$name" "$OUT/int8/$name.json" bash -c '"$@"; rc=$?; [ $rc -ne 2 ]' _ "$MC" check-int8 carphone \
    --float "$CKPTS" --int8 "$(int8_dirs "$kind")" --intra-period "$INTRA" --frames "$FRAMES" "$@" \
    -o "$OUT/int8/$name" --json "$OUT/int8/$name.json" --no-progress
}

want int8 && for kind in w8a8 w8a16rx qat8; do
  check_int8 "check_$kind" "$kind"
done

# int8 as deployed: the checks with block modes, and the packages' own RD on onnxruntime CPU
if want int8 && [[ $MODES != 0 ]]; then
  for kind in w8a8 w8a16rx; do
    check_int8 "check_${kind}_modes" "$kind" --block-modes "$MODES" --sensitivity-frames 0
    for name in $SHIPPED; do
      q="$OUT/int8/$name"
      step "export_${kind}_$name" "$q/pk_$kind/manifest.json" "$MC" export --checkpoint "$name" --size 144x176 \
        --int8 "$q/$kind" -o "$q/pk_$kind"
    done
    d="$OUT/rd_carphone"
    anchors carphone "$FRAMES"
    step "carphone_eval_$kind" "$d/eval_$kind.json" "$MC" eval carphone --package "$(int8_dirs "pk_$kind")" \
      --frames "$FRAMES" --intra-period "$INTRA" --block-modes "$MODES" --anchor "$d/x264.json" \
      -o "$d/eval_$kind" --json "$d/eval_$kind.json" --no-progress
    bd_rates "$d" "eval_$kind"
  done
fi

# 5. cross-backend drift (issue #12) -------------------------------------------------------------------
# every backend pair of the README's drift table ("Decodable anywhere"): float ONNX vs PyTorch, int8 vs the aimet
# simulation (receiver W8A16 with the QNN HTP pair, W8A8)
want drift && for preset in float w8a16rx w8a8; do
  htp=()
  [[ $preset == w8a16rx ]] && htp=(--htp)
  step "drift_$preset" "$OUT/drift_$preset.json" "$PY" scripts/drift_sources.py --checkpoint "$DRIFT_CKPT" \
    --preset "$preset" "${htp[@]}" --frames "${DRIFT_FRAMES:-32}" --workdir "$OUT/drift_work" --json "$OUT/drift_$preset.json"
done

# Issue #13's acceptance, from the reports above --------------------------------------------------------
"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

from mobilecodec.evaluate import drift_summary
from mobilecodec.fsutil import write_json_atomic

out = Path(sys.argv[1])
summary = {}
for d, name in [(d, e.stem) for d in sorted(out.glob("rd_*")) for e in sorted(d.glob("eval*.json"))]:
    res = json.loads((d / f"{name}.json").read_text())["results"][0]["result"]
    bd = json.loads((d / f"bd{name.removeprefix('eval')}.json").read_text())
    points = []
    for p in sorted(res["points"], key=lambda p: p["bpp"]):
        dr = drift_summary(p)  # the bar is over full intra periods: the clip's last may be cut short
        points.append({"label": p["label"], "bpp": p["bpp"], "psnr_yuv": p["psnr_yuv"], "psnr_rgb": p["psnr_rgb"],
                       "rgb_gap": p["psnr_yuv"] - p["psnr_rgb"], "drift_bits_ratio": dr["worst_bits_ratio_full"],
                       "drift_psnr_drop": dr["worst_psnr_yuv_drop_full"],
                       "hash_verified": p["hash_verified_frames"] == res["frames"]})
    clip = d.name[3:] + name.removeprefix("eval")  # carphone, carphone_refined, ...
    summary[clip] = {"frames": res["frames"], "intra_period": res.get("intra_period"), "points": points,
                     "bd_rate": {c: bd[c]["bd_rate"] or bd[c]["error"] for c in bd}}
    print(f"{clip} ({res['frames']} frames, intra period {res.get('intra_period')}):")
    for c in bd:
        what = f"{c.removesuffix('_payload')} medium, payloads vs packets" if c.endswith("_payload") else f"{c} medium, files"
        print(f"  BD-rate against {what}: {bd[c]['bd_rate'] or bd[c]['error']}")
    for q in points:
        ratio = "-" if q["drift_bits_ratio"] is None else f"{q['drift_bits_ratio']:.2f}x"
        drop = "-" if q["drift_psnr_drop"] is None else f"{-q['drift_psnr_drop']:+.2f} dB"  # a drop is negative, as eval prints it
        print(f"  {q['label']:<14} {q['bpp']:.4f} bpp  {q['psnr_yuv']:.2f} dB YUV  {q['psnr_rgb']:.2f} dB RGB  "
              f"gap {q['rgb_gap']:.2f} dB  drift (full periods) {ratio} / {drop}  hashes {'ok' if q['hash_verified'] else 'FAILED'}")
write_json_atomic(out / "acceptance.json", summary)
EOF
echo "all figures in $OUT ($OUT/acceptance.json: issue #13's acceptance figures)"
