#!/bin/bash
# Every speed figure of issues 18/26 on one GPU, in two parts of at most ~5 minutes each (one device call each;
# random weights at real shapes: no download). Runs from a checkout as it is: no install of `scaling`.
#   PART=1 bash launch/bench_gpu.sh OUT_DIR   the headline figures: our training step vs plain and vs plain +
#                                             Liger-Kernel (with profiles of both), generation vs HF generate;
#                                             then cached features and LiMBeR(all)
#   PART=2 bash launch/bench_gpu.sh OUT_DIR   the CUDA-graph decode (its own run), our FP8 step, torchao's
#                                             float8 (torch.compile), kernel micro-benchmarks, the GPU tests
#   bash launch/bench_gpu.sh [OUT_DIR]        both parts (PART=all; default OUT_DIR runs/bench)
#   DEVICE=cpu bash launch/bench_gpu.sh /tmp/dry   a dry run of the whole script at tiny shapes on CPU
# Writes OUT_DIR/NAME.json (one file per measurement), NAME.log, *_profile.txt, summary.txt (also printed at
# the end of each part), and with TAR=FILE a .tgz of OUT_DIR (the device tool returns at most 8 files: put
# FILE under $OUT there). A run's time limit is min(RUN_TIMEOUT, what is left of BUDGET_S for its part):
# runs the budget cannot reach write NAME.notrun, so a part never outlasts its device call.
# Packages the image lacks (Liger-Kernel, torchao, pytest) travel as wheels in .whl/ (built by
# ../shared/tools/device-wheels.sh, see docs/gpu_bench.md); this script installs them first. It stops with
# the reason and the fix when something it needs is missing (python -m scaling.bench.preflight).
# FP8 rows need compute capability >= 8.9 (H100/H200/L40) and are skipped below it.
set -uo pipefail
# ================================ set these ================================
PYTHON="${PYTHON:-python3}"         # the GPU image documents only python3
PART="${PART:-all}"                 # 1 | 2 | all
DEVICE="${DEVICE:-cuda}"            # cpu: a dry run at tiny shapes (the defaults below switch to tiny)
if [ "$DEVICE" = cpu ]; then
    LLM="${LLM:-tiny-llama}"; ENCODER="${ENCODER:-tiny-vit}"; BATCH="${BATCH:-2}"; GEN_BATCH="${GEN_BATCH:-2}"
    STEPS="${STEPS:-1}"; GEN_STEPS="${GEN_STEPS:-1}"; WARMUP="${WARMUP:-0}"; DTYPE="${DTYPE:-fp32}"
    NEW_TOKENS="${NEW_TOKENS:-3}"; RUN_TIMEOUT="${RUN_TIMEOUT:-300}"; BUDGET_S="${BUDGET_S:-900}"
else
    LLM="${LLM:-llama-7b}"              # >>> SET: a shape name of scaling/models/shapes.py (random weights)
    ENCODER="${ENCODER:-clip-vit-l14}"  # >>> SET: likewise
    BATCH="${BATCH:-32}"                # training micro batch of one GPU
    GEN_BATCH="${GEN_BATCH:-64}"        # generation batch (issue 18: 64 samples, 20 new tokens)
    NEW_TOKENS="${NEW_TOKENS:-20}"
    STEPS="${STEPS:-10}"                # timed steps per measurement
    WARMUP="${WARMUP:-3}"
    GEN_STEPS="${GEN_STEPS:-3}"         # timed generate calls per variant (after 1 warm-up call)
    DTYPE="${DTYPE:-bf16}"
    RUN_TIMEOUT="${RUN_TIMEOUT:-150}"   # seconds, at most, per measurement
    BUDGET_S="${BUDGET_S:-285}"         # seconds per part, wheels and checks included (a device call allows 600)
fi
# ===========================================================================
stop() { echo "STOP: $*" >&2; exit 1; }
case "$PART" in 1|2|all) ;; *) stop "PART must be 1, 2 or all, not '$PART'" ;; esac
command -v "$PYTHON" >/dev/null 2>&1 || stop "no '$PYTHON' on PATH: set PYTHON=/path/to/python3"
T0=$(date +%s)
DEADLINE=$(( T0 + BUDGET_S ))
OUT="${1:-runs/bench}"
mkdir -p "$OUT" || stop "cannot create $OUT"
OUT="$(cd "$OUT" && pwd)"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false   # nothing is fetched

# ---------------------------------------------------------------- wheels the image lacks (.whl/, carried)
SITE="${WHEEL_SITE:-/tmp/site}"
if compgen -G ".whl/*.whl" >/dev/null; then
    echo "== installing $(ls .whl/*.whl | wc -l) wheels from .whl/ into $SITE"
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
        || stop "'$PYTHON -m pip install --no-index --no-deps --target $SITE .whl/*.whl' failed (above): rebuild .whl/ with ../shared/tools/device-wheels.sh (docs/gpu_bench.md)"
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"   # this tree's scaling first, installed or not

# ---------------------------------------------------------------- a clear stop before any GPU time is spent
allow=(); [ "${ALLOW_MISSING:-0}" = 1 ] && allow=(--allow-missing)
"$PYTHON" -m scaling.bench.preflight --device "$DEVICE" --part "$PART" "${allow[@]}" || exit 1
FP8=""
if [ "$DEVICE" = cpu ] || "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.get_device_capability() >= (8, 9) else 1)"; then
    FP8="--fp8"
fi
common=(--llm-shape "$LLM" --encoder-shape "$ENCODER" --device "$DEVICE" --dtype "$DTYPE" --steps "$STEPS" --warmup "$WARMUP" --json)
gen=(--llm-shape "$LLM" --encoder-shape "$ENCODER" --device "$DEVICE" --dtype "$DTYPE" --steps "$GEN_STEPS" --warmup 1 --json
     --batch "$GEN_BATCH" --method depalm --generate --new-tokens "$NEW_TOKENS" --text-len 6)

limit_for() {  # seconds the next run may take (what is left of the part's budget, at most RUN_TIMEOUT)
    local left=$(( DEADLINE - $(date +%s) - 5 ))
    echo $(( left < RUN_TIMEOUT ? left : RUN_TIMEOUT ))
}

notrun() {  # name: the budget ran out before it
    echo "== $1: not run: the part's time budget ran out (BUDGET_S=$BUDGET_S s)"
    echo "the time budget of its part ran out (BUDGET_S=$BUDGET_S s)" > "$OUT/$1.notrun"
}

run() {  # name, then scaling bench arguments; OUT/name.json holds its result, OUT/name.log its stderr
    local name="$1"; shift
    local limit; limit=$(limit_for)
    rm -f "$OUT/$name.json" "$OUT/$name.notrun" "$OUT/$name.log"
    if [ "$limit" -lt 20 ]; then notrun "$name"; return; fi
    echo "== $name: scaling bench $*  (limit ${limit} s; $(( $(date +%s) - T0 )) s so far)"
    timeout -k 10 "$limit" "$PYTHON" -m scaling bench "$@" > "$OUT/$name.json.tmp" 2> "$OUT/$name.log"
    local rc=$?
    if [ "$rc" = 0 ]; then
        tail -n 1 "$OUT/$name.json.tmp" > "$OUT/$name.json"
    else
        [ "$rc" = 124 ] && echo "timed out after ${limit} s" >> "$OUT/$name.log"
        echo "   failed (exit $rc$([ "$rc" = 124 ] && echo ": timed out after ${limit} s")): see $OUT/$name.log"
        tail -n 5 "$OUT/$name.log"
    fi
    rm -f "$OUT/$name.json.tmp"
}

finish() {  # the table of everything in OUT (this part's runs and any earlier part's), then the tarball
    "$PYTHON" -m scaling.bench.summary "$OUT" | tee "$OUT/summary.txt"
    if [ -n "${TAR:-}" ]; then
        tar -czf "$TAR" -C "$(dirname "$OUT")" "$(basename "$OUT")" && echo "== $OUT packed into $TAR"
    fi
    echo "== part $PART done in $(( $(date +%s) - T0 )) s (budget $BUDGET_S s); table: $OUT/summary.txt"
}

if [ "$PART" != 2 ]; then  # ------------------------------------------ part 1: the headline figures first
    run depalm "${common[@]}" --batch "$BATCH" --method depalm --compare plain \
        --profile "$OUT/ours_profile.txt" --profile-plain "$OUT/plain_profile.txt"
    run depalm_liger "${common[@]}" --batch "$BATCH" --method depalm --compare liger
    run generate "${gen[@]}" --compare hf
    run depalm_cached "${common[@]}" --batch "$BATCH" --method depalm --compare plain --cached-features
    run limber_all "${common[@]}" --batch "$BATCH" --method limber-all --compare none
    [ "$PART" = 1 ] && finish
fi
if [ "$PART" != 1 ]; then  # ------------------------------------------ part 2
    if [ "$PART" = all ]; then T0=$(date +%s); DEADLINE=$(( T0 + BUDGET_S )); fi   # each part has its budget
    if [ -n "$FP8" ]; then
        run depalm_fp8 "${common[@]}" --batch "$BATCH" --method depalm --compare none $FP8
    fi
    run depalm_torchao "${common[@]}" --batch "$BATCH" --method depalm --compare none --no-fused-llm --torchao-fp8
    run generate_graph "${gen[@]}" --compare none --compile-decode
    if [ "$DEVICE" != cpu ]; then
        limit=$(limit_for)
        if [ "$limit" -ge 20 ]; then  # every test runs (no -x): one failure does not hide the others
            echo "== GPU tests of the kernels and the FP8 path  (limit ${limit} s; $(( $(date +%s) - T0 )) s so far)"
            timeout -k 10 "$limit" "$PYTHON" -m pytest -q -p no:cacheprovider tests/kernels/test_target_loss.py \
                tests/kernels/test_fast_llm.py tests/models/test_fp8_llm.py tests/models/test_fused_llm_build.py \
                > "$OUT/tests.txt" 2>&1
            echo "   pytest exit $?"; tail -n 15 "$OUT/tests.txt"
        else
            notrun tests
        fi
        limit=$(limit_for)
        if [ "$limit" -ge 20 ]; then
            echo "== kernel micro-benchmarks  (limit ${limit} s)"
            timeout -k 10 "$limit" "$PYTHON" -m scaling.bench.kernels --json-out "$OUT/kernels.json" > "$OUT/kernels.txt" 2>&1 \
                || echo "   kernel bench failed or timed out: see $OUT/kernels.txt"
        else
            notrun kernels
        fi
    fi
    finish
fi
