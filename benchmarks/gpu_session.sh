#!/usr/bin/env bash
# GPU speed and memory per iteration, and the BSDS val runs that a GPU does in minutes: the
# paper preset with TF32, as the reference rows ran (a cross-check of the CPU run scored in
# benchmarks/scores/), and beside it the public demo's loop (see benchmarks/demo_loop.py), as
# one script.
# Usage, from the repository root: bash benchmarks/gpu_session.sh [PART ...]
#   speed     per-iteration speed of both presets at fp32/tf32/bf16, and GPU memory
#   paper     the paper preset on all of val
#   demo      today's public demo (quirks init,bgr,extra) on all of val
#   init      the preset's loop with PyTorch's default initialisation only (quirk init)
#   demo2018  the demo before 2019 (all quirks: its middle block untrained) on all of val
# Default: speed paper demo. A device session with a 10-minute limit per command can run
# one part per call. The BSDS runs segment 4 images at once (forked workers share the GPU,
# SLIC runs on the CPU cores) and resume where they stopped.
# DATA (default ../shared/data/bsds500) is the BSDS500 folder; logs and rows go to
# ${OUT:-benchmarks/results/gpu}.
set -uo pipefail
data=${DATA:-../shared/data/bsds500}
out=${OUT:-benchmarks/results/gpu}
if (($#)); then parts=("$@"); else parts=(speed paper demo); fi
for part in "${parts[@]}"; do
  case $part in
    speed | paper | demo | init | demo2018) ;;
    *) echo "unknown part: $part (speed, paper, demo, init, demo2018)" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
export PYTHONUNBUFFERED=1
bsds() {  # bsds NAME ARGS...: one val run on the GPU, its row in $out/benchmarks_rows.md
  local name=$1
  shift
  python benchmarks/bsds.py --data "$data" --param device=cuda --param precision=tf32 --jobs 4 \
    --out "$out/val-$name" --docs "$out/benchmarks_rows.md" "$@" 2>&1 | tee "$out/bsds_$name.log"
}
for part in "${parts[@]}"; do
  case $part in
    speed)
      python benchmarks/speed.py --device cuda --precision fp32 tf32 bf16 -n 20 2>&1 | tee "$out/speed_paper.log"
      python benchmarks/speed.py --device cuda --preset default --precision fp32 tf32 bf16 -n 20 2>&1 | tee "$out/speed_default.log"
      python benchmarks/speed.py --device cuda --memory --precision tf32 2>&1 | tee "$out/memory.log"
      ;;
    paper) bsds paper --method paper ;;
    demo) bsds demo --method demo ;;
    init) bsds init --method demo --quirks init ;;
    demo2018) bsds demo2018 --method demo --quirks all ;;
  esac
done
