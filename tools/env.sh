# Sourced by the project's scripts: the libtorch that tch builds and runs against.
# tch 0.24 expects PyTorch 2.11.0; it lives in a venv cached under ~/.cache/xttsd.
# Safe to source before the venv exists (tools/setup sources it first, then creates the venv):
# nothing here may fail under `set -euo pipefail`.
XTTSD_VENV="${XTTSD_VENV:-$HOME/.cache/xttsd/venv}"
export XTTSD_VENV
export PATH="$XTTSD_VENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
XTTSD_TORCH_LIB=""
for dir in "$XTTSD_VENV"/lib/python3*/site-packages/torch/lib; do
    if [ -d "$dir" ]; then
        XTTSD_TORCH_LIB="$dir"
        break
    fi
done
unset dir
if [ -n "$XTTSD_TORCH_LIB" ]; then
    export LD_LIBRARY_PATH="${XTTSD_TORCH_LIB}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
