#!/bin/bash
# Every speed figure of the README on one GPU, in one go (random weights at real shapes: no download).
#   bash launch/bench_gpu.sh [OUT_DIR]        (default runs/bench; ~10 minutes on one H100)
# Writes OUT_DIR/*.json (one file per measurement) and OUT_DIR/summary.txt; each `scaling bench` times
# the plain Hugging Face step and the project's step in the same process. FP8 rows need compute
# capability >= 8.9 (H100/H200/L40) and are skipped below it. GPU tests of the kernels run last.
set -uo pipefail
# ================================ set these ================================
LLM="${LLM:-llama-7b}"              # >>> SET: a shape name of scaling/models/shapes.py (random weights)
ENCODER="${ENCODER:-clip-vit-l14}"  # >>> SET: likewise
BATCH="${BATCH:-32}"                # micro batch of one GPU
STEPS="${STEPS:-10}"                # timed steps per measurement (after 3 warm-up steps)
DEVICE="${DEVICE:-cuda}"            # cpu: a dry run of this script at tiny shapes (LLM=tiny-llama ENCODER=tiny-vit)
DTYPE="${DTYPE:-bf16}"
# ===========================================================================
OUT="${1:-runs/bench}"
mkdir -p "$OUT"
FP8=""
if [ "$DEVICE" = cpu ] || python -c "import sys, torch; sys.exit(0 if torch.cuda.get_device_capability() >= (8, 9) else 1)"; then
    FP8="--fp8"
fi
common=(--llm-shape "$LLM" --encoder-shape "$ENCODER" --batch "$BATCH" --steps "$STEPS" --device "$DEVICE" --dtype "$DTYPE" --json)

run() {  # name, then scaling bench arguments
    local name="$1"; shift
    echo "== $name: scaling bench $*"
    if scaling bench "$@" > "$OUT/$name.json.tmp" 2> "$OUT/$name.log"; then
        tail -n 1 "$OUT/$name.json.tmp" > "$OUT/$name.json"
    else
        echo "   failed: see $OUT/$name.log"; tail -n 5 "$OUT/$name.log"
    fi
    rm -f "$OUT/$name.json.tmp"
}

run depalm "${common[@]}" --method depalm --compare plain $FP8 --profile "$OUT/depalm_profile.txt"
run depalm_cached "${common[@]}" --method depalm --compare plain --cached-features $FP8
run depalm_compiled_encoder "${common[@]}" --method depalm --compare plain --compile-encoder $FP8
run depalm_torch_paths "${common[@]}" --method depalm --compare none --kernels torch --no-fused-llm
run limber_all "${common[@]}" --method limber-all --compare plain
python -m scaling.bench.kernels --json-out "$OUT/kernels.json" > "$OUT/kernels.txt" 2>&1 || echo "kernel bench failed"

python - "$OUT" <<'EOF' | tee "$OUT/summary.txt"
import json, os, sys
out = sys.argv[1]
def load(name):
    path = os.path.join(out, name + ".json")
    return json.load(open(path)) if os.path.exists(path) else None
print(f"{'measurement':36s} {'step ms':>9s} {'samples/s':>10s} {'TFLOP/s':>8s} {'peak GB':>8s}  vs plain")
for name in ("depalm", "depalm_cached", "depalm_compiled_encoder", "depalm_torch_paths", "limber_all"):
    res = load(name)
    if res is None:
        print(f"{name:36s} (failed)")
        continue
    gpu = res["config"]["gpu"]
    for row in ("plain", "ours", "ours_fp8"):
        r = res.get(row)
        if r:
            ratio = r["samples_s"] / res["plain"]["samples_s"] if "plain" in res else float("nan")
            print(f"{name + ' ' + row:36s} {r['step_ms']:9.1f} {r['samples_s']:10.1f} {r['tflops']:8.1f} "
                  f"{(r['peak_gb'] or 0):8.1f}  {ratio:.2f}x")
    if "fp8_effect" in res:
        e = res["fp8_effect"]
        print(f"{'':36s} FP8 effect: loss relative diff {e['loss_rel_diff']:.2e}, gradient cosine {e['grad_cosine']:.4f}")
d, l = load("depalm"), load("limber_all")
if d and l:
    print(f"LiMBeR(all) / DePALM step time: {l['ours']['step_ms'] / d['ours']['step_ms']:.2f}x (paper: ~4x); GPU: {gpu}")
EOF

echo "== GPU tests of the kernels and the FP8 path"
python -m pytest -q tests/kernels tests/models/test_fp8_llm.py tests/models/test_fused_llm_build.py 2>&1 | tail -n 5 | tee "$OUT/tests.txt"
