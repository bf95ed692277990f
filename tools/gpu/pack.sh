#!/usr/bin/env bash
# Packs what a benchmark on a machine with a GPU needs into one folder (default target/gpu-kit):
# the release xttsd binary (and the libmecab it links), the tiny fixture model, the reference voice clip, the random
# full-size checkpoint writer with its layout, and run.sh. Build the binary first:
#   source tools/env.sh && cargo build --release
set -euo pipefail
cd "$(dirname "$0")/../.."
KIT="${1:-target/gpu-kit}"
BIN=target/release/xttsd
LIMIT_MIB=64

[ -x "$BIN" ] || { echo "pack.sh: $BIN missing: run 'source tools/env.sh && cargo build --release'" >&2; exit 1; }
rm -rf "$KIT"
mkdir -p "$KIT/tiny"
cp "$BIN" "$KIT/xttsd"
strip "$KIT/xttsd" 2>/dev/null || true
# libmecab (the Japanese front-end) is linked too; the GPU machine may not have it.
mkdir -p "$KIT/lib"
mecab="$(ldd "$BIN" | awk '/libmecab/ {print $3}')"
[ -n "$mecab" ] && cp -L "$mecab" "$KIT/lib/"
cp tools/gpu/run.sh tools/reference/make_random_full.py tools/reference/full_layout.json "$KIT/"
cp tests/fixtures/ref_24k.wav "$KIT/voice.wav"
cp tests/fixtures/tiny/model/config.json tests/fixtures/tiny/model/model.pth tests/fixtures/tiny/model/vocab.json "$KIT/tiny/"
git rev-parse HEAD >"$KIT/COMMIT" 2>/dev/null || true

size_mib=$(du -sm "$KIT" | cut -f1)
echo "$KIT: ${size_mib} MiB"
ls -l "$KIT"
if [ "$size_mib" -gt "$LIMIT_MIB" ]; then
    echo "pack.sh: $KIT is larger than $LIMIT_MIB MiB" >&2
    exit 1
fi
