# Sourced by the project's scripts: the libtorch that tch builds and runs against.
# tch 0.24 expects PyTorch 2.11.0; it lives in a venv cached under ~/.cache/xttsd.
XTTSD_VENV="${XTTSD_VENV:-$HOME/.cache/xttsd/venv}"
export PATH="$XTTSD_VENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
XTTSD_TORCH_LIB="$(ls -d "$XTTSD_VENV"/lib/python3*/site-packages/torch/lib 2>/dev/null | head -n1)"
export LD_LIBRARY_PATH="${XTTSD_TORCH_LIB}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
