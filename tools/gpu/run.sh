#!/usr/bin/env bash
# Benchmarks xttsd on a machine with a GPU, from a folder made by tools/gpu/pack.sh. Needs python3
# with PyTorch 2.11 (the libtorch xttsd was built against) and an NVIDIA driver; not coqui-tts.
#
#   OUT=/path/for/results bash KIT/run.sh
#
# Steps (each under its own time limit, 14 minutes in all): environment report, CUDA check
# on the tiny model, a random full-size checkpoint, `xttsd say` on it (first chunk, real-time
# factor), then `xttsd bench` over 1..200 concurrent calls (fp32, then the GPT in bfloat16 on fewer rounds)
# and `xttsd bench --bot` over 1..100 voicebot calls. Everything lands in $OUT; the
# 1.9 GB checkpoint goes to $WORK (default: a temporary folder, removed at the end; a given
# $WORK keeps it for the next run).
set -uo pipefail
KIT="$(cd "$(dirname "$0")" && pwd)"
OUT="${OUT:-$PWD/gpu-results}"
mkdir -p "$OUT"
if [ -z "${WORK:-}" ]; then
    WORK="$(mktemp -d)"
    OWN_WORK=1
fi
mkdir -p "$WORK"
CALLS="${CALLS:-1,10,50,100,150,200}"
DURATION="${DURATION:-20}"
TOKENS="${TOKENS:-86}"
# Every call its own decoding slot: 200 slots of the released model take about 50 GiB (fp32).
MAX_BATCH="${MAX_BATCH:-200}"
BENCH_EXTRA="${BENCH_EXTRA:-}" # more bench flags, e.g. "--threads 4"
# For a quick check of this script without a GPU: DEVICE=cpu MODEL=KIT/tiny CALLS=1,2 DURATION=3 MAX_BATCH=8
DEVICE="${DEVICE:-cuda}"
MODEL="${MODEL:-$WORK/full}"
exec > >(tee -a "$OUT/run.log") 2>&1
export NO_COLOR=1 # plain log files

step() { echo; echo "== $* ($(date -u +%H:%M:%S))"; }
# A temporary $WORK goes; a given one keeps the checkpoint for the next run.
cleanup() { [ "${OWN_WORK:-0}" = 1 ] && rm -rf "$WORK"; }
trap cleanup EXIT

step "environment"
TORCH_DIR="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')" || {
    echo "run.sh: python3 cannot import torch"
    exit 1
}
export LD_LIBRARY_PATH="$TORCH_DIR/lib:$KIT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
{
    echo "kit commit: $(cat "$KIT/COMMIT" 2>/dev/null || echo unknown)"
    python3 -c 'import torch;print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")'
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi: not available"
    nproc
    free -g | head -2
} | tee "$OUT/env.txt"
ldd "$KIT/xttsd" >"$OUT/ldd.txt"
if grep -q "not found" "$OUT/ldd.txt"; then
    echo "run.sh: libraries missing for xttsd:"
    grep "not found" "$OUT/ldd.txt"
    exit 1
fi

# Voice caches are written next to the clip: keep them out of the kit.
cp "$KIT/voice.wav" "$WORK/voice.wav"
VOICE="$WORK/voice.wav"
mkdir -p "$WORK/speakers" # say needs a voices folder; the clip is given as a file

step "device check: xttsd say --device $DEVICE on the tiny model"
# xttsd refuses --device cuda when libtorch sees no CUDA device, with a one-line reason.
if ! timeout 60 "$KIT/xttsd" say --model "$KIT/tiny" --voice "$VOICE" --speakers "$WORK/speakers" --text "Hello there." \
    --out "$OUT/tiny.wav" --device "$DEVICE" >"$OUT/device_check.log" 2>&1; then
    tail -n 3 "$OUT/device_check.log"
    echo "run.sh: xttsd cannot use $DEVICE here; stopping"
    exit 1
fi
grep -o "device=[A-Za-z]*([0-9]*)\|device=Cpu" "$OUT/device_check.log" | head -n 1

step "model $MODEL (a random full-size checkpoint is made unless present)"
[ -f "$MODEL/model.pth" ] || timeout 120 python3 "$KIT/make_random_full.py" --out "$MODEL" || {
    echo "run.sh: make_random_full.py failed"
    exit 1
}

step "xttsd say --device $DEVICE on $MODEL"
# The random model rarely picks the stop code, so this speaks for up to 602 codes (28 s).
timeout 90 "$KIT/xttsd" say --model "$MODEL" --voice "$VOICE" --speakers "$WORK/speakers" --lang en \
    --text "Thank you for calling, how can I help you today?" --seed 1 \
    --out "$OUT/say_full.wav" --device "$DEVICE" >"$OUT/say_full.log" 2>&1
echo "say exit status: $?"
grep -v INFO "$OUT/say_full.log"

# One benchmark: NAME names its files in $OUT (NAME.txt, NAME.json, NAME.log), LIMIT is its time
# limit in seconds, CALLS its rounds; further arguments are more bench flags.
bench_calls() {
    local name=$1 limit=$2 calls=$3
    shift 3
    step "xttsd bench --device $DEVICE $* --calls $calls --duration $DURATION --tokens $TOKENS --max-batch $MAX_BATCH $BENCH_EXTRA"
    # shellcheck disable=SC2086 # BENCH_EXTRA is a list of flags
    timeout "$limit" "$KIT/xttsd" bench --model "$MODEL" --voice "$VOICE" --device "$DEVICE" "$@" \
        --calls "$calls" --duration "$DURATION" --tokens "$TOKENS" --max-batch "$MAX_BATCH" $BENCH_EXTRA --json "$OUT/$name.json" \
        >"$OUT/$name.txt" 2>"$OUT/$name.log"
    echo "$name exit status: $?"
    cat "$OUT/$name.txt"
    grep -v INFO "$OUT/$name.log" | tail -n 5
    # What the engine measured at start: decode steps, the vocoder's batch and the decoder's
    # margin; and how long the vocoder's thread took to warm its shapes.
    grep -o "decoder and vocoder measured.*" "$OUT/$name.log" | head -n 1
    grep -o "vocoder warmed.*" "$OUT/$name.log" | head -n 1
}

bench_calls bench 300 "$CALLS"
# The same benchmark with the GPT in bfloat16 (the vocoder stays in fp32), on fewer rounds.
bench_calls bench_bf16 150 "${BF16_CALLS:-1,200}" --gpt-dtype bfloat16

BOT_CALLS="${BOT_CALLS:-1,10,50,100}"
step "xttsd bench --bot --device $DEVICE --calls $BOT_CALLS --tokens $TOKENS --max-batch $MAX_BATCH $BENCH_EXTRA"
# Voicebot calls: text streamed as an LLM sends it, then a barge-in; first token to first audio,
# clear to silence, late frames, segment sizes.
# shellcheck disable=SC2086 # BENCH_EXTRA is a list of flags
timeout 120 "$KIT/xttsd" bench --bot --model "$MODEL" --voice "$VOICE" --device "$DEVICE" \
    --calls "$BOT_CALLS" --tokens "$TOKENS" --max-batch "$MAX_BATCH" $BENCH_EXTRA --json "$OUT/bench_bot.json" \
    >"$OUT/bench_bot.txt" 2>"$OUT/bench_bot.log"
echo "bench --bot exit status: $?"
cat "$OUT/bench_bot.txt"
grep -v INFO "$OUT/bench_bot.log" | tail -n 5
step "done: results in $OUT"
