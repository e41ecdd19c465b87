#!/bin/bash
# Every speed figure of issue 18 / the README on one GPU, in one go (random weights at real shapes: no download).
#   bash launch/bench_gpu.sh [OUT_DIR]        (default runs/bench; sized for <= 8 minutes on one H100/H200)
#   DEVICE=cpu bash launch/bench_gpu.sh /tmp/dry   (a dry run of the whole script at tiny shapes on CPU)
# Writes OUT_DIR/*.json (one file per measurement), OUT_DIR/*_profile.txt and OUT_DIR/summary.txt:
#   training step, ours vs plain (encoder in the step), with FP8 weights, with cached features;
#   the plain step patched with Liger-Kernel; our FP8 vs torchao's row-wise float8; LiMBeR(all)/DePALM;
#   evaluation generation, ours (dynamic / static KV cache / CUDA graph) vs Hugging Face generate;
#   a profile of the plain step and of ours (where the time goes, before and after); kernel micro-benchmarks.
# Liger-Kernel / torchao rows say "not installed" when the package is missing. FP8 rows need compute
# capability >= 8.9 (H100/H200/L40) and are skipped below it. GPU tests of the kernels run last.
set -uo pipefail
# ================================ set these ================================
DEVICE="${DEVICE:-cuda}"            # cpu: a dry run at tiny shapes (the defaults below switch to tiny)
if [ "$DEVICE" = cpu ]; then
    LLM="${LLM:-tiny-llama}"; ENCODER="${ENCODER:-tiny-vit}"; BATCH="${BATCH:-2}"; GEN_BATCH="${GEN_BATCH:-2}"
    STEPS="${STEPS:-1}"; GEN_STEPS="${GEN_STEPS:-1}"; WARMUP="${WARMUP:-0}"; DTYPE="${DTYPE:-fp32}"; RUN_TIMEOUT="${RUN_TIMEOUT:-300}"
else
    LLM="${LLM:-llama-7b}"              # >>> SET: a shape name of scaling/models/shapes.py (random weights)
    ENCODER="${ENCODER:-clip-vit-l14}"  # >>> SET: likewise
    BATCH="${BATCH:-32}"                # training micro batch of one GPU
    GEN_BATCH="${GEN_BATCH:-64}"        # generation batch (issue 18: 64 samples, 20 new tokens)
    STEPS="${STEPS:-10}"                # timed steps per measurement
    WARMUP="${WARMUP:-3}"
    GEN_STEPS="${GEN_STEPS:-3}"         # timed generate calls per variant (after 1 warm-up call)
    DTYPE="${DTYPE:-bf16}"
    RUN_TIMEOUT="${RUN_TIMEOUT:-150}"   # seconds per measurement: the whole script stays under 8 minutes
fi
# ===========================================================================
OUT="${1:-runs/bench}"
mkdir -p "$OUT"
FP8=""
if [ "$DEVICE" = cpu ] || python -c "import sys, torch; sys.exit(0 if torch.cuda.get_device_capability() >= (8, 9) else 1)"; then
    FP8="--fp8"
fi
common=(--llm-shape "$LLM" --encoder-shape "$ENCODER" --device "$DEVICE" --dtype "$DTYPE" --steps "$STEPS" --warmup "$WARMUP" --json)
T0=$(date +%s)

run() {  # name, then scaling bench arguments
    local name="$1"; shift
    echo "== $name: scaling bench $*  ($(( $(date +%s) - T0 )) s so far)"
    if timeout "$RUN_TIMEOUT" scaling bench "$@" > "$OUT/$name.json.tmp" 2> "$OUT/$name.log"; then
        tail -n 1 "$OUT/$name.json.tmp" > "$OUT/$name.json"
    else
        echo "   failed or timed out: see $OUT/$name.log"; tail -n 5 "$OUT/$name.log"
    fi
    rm -f "$OUT/$name.json.tmp"
}

run depalm "${common[@]}" --batch "$BATCH" --method depalm --compare plain $FP8 \
    --profile "$OUT/ours_profile.txt" --profile-plain "$OUT/plain_profile.txt"
run depalm_cached "${common[@]}" --batch "$BATCH" --method depalm --compare plain --cached-features
run depalm_liger "${common[@]}" --batch "$BATCH" --method depalm --compare liger
run depalm_torchao "${common[@]}" --batch "$BATCH" --method depalm --compare none --no-fused-llm --torchao-fp8
run limber_all "${common[@]}" --batch "$BATCH" --method limber-all --compare none
run generate "${common[@]}" --batch "$GEN_BATCH" --method depalm --generate --compare hf --new-tokens 20 --text-len 6 \
    --compile-decode --steps "$GEN_STEPS" --warmup 1
if [ "$DEVICE" != cpu ]; then
    timeout "$RUN_TIMEOUT" python -m scaling.bench.kernels --json-out "$OUT/kernels.json" > "$OUT/kernels.txt" 2>&1 || echo "kernel bench failed"
fi

python -m scaling.bench.summary "$OUT" | tee "$OUT/summary.txt"

if [ "$DEVICE" != cpu ]; then
    echo "== GPU tests of the kernels and the FP8 path  ($(( $(date +%s) - T0 )) s so far)"
    timeout "$RUN_TIMEOUT" python -m pytest -q -x tests/kernels/test_target_loss.py tests/kernels/test_fast_llm.py \
        tests/models/test_fp8_llm.py tests/models/test_fused_llm_build.py 2>&1 | tail -n 5 | tee "$OUT/tests.txt"
fi
echo "== done in $(( $(date +%s) - T0 )) s; table: $OUT/summary.txt"
