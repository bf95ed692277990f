#!/usr/bin/env python3
"""Writes full_layout.json: the tensor layout, config and vocab of a full-size model directory.

    make_full_layout.py --model DIR [--out tools/reference/full_layout.json]

DIR is a full-size checkpoint made by `make_checkpoint.py --size full` (its vocab is our own). The
manifest lets `make_random_full.py` rebuild a checkpoint of the same layout with torch alone. It also
checks that the constant front-end buffers computed by make_random_full.py equal those in DIR.
Needs only torch.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_random_full import fixed_buffers  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "full_layout.json")
    opts = parser.parse_args()
    torch.set_num_threads(1)

    # mmap: the weights are not needed, only their names, shapes and dtypes (and three small buffers).
    checkpoint = torch.load(opts.model / "model.pth", map_location="cpu", mmap=True, weights_only=False)
    state = checkpoint["model"]
    config = json.loads((opts.model / "config.json").read_text(encoding="utf-8"))
    if checkpoint["config"] != config:
        raise SystemExit(f"{opts.model}: the config inside model.pth differs from config.json")

    for name, expected in fixed_buffers().items():
        got = state[name]
        if got.shape != expected.shape or not torch.allclose(got, expected, rtol=0.0, atol=1e-6):
            diff = (got - expected).abs().max().item() if got.shape == expected.shape else "shape"
            raise SystemExit(f"{name}: computed values differ from {opts.model} (max diff {diff})")

    manifest = {
        "about": "Tensor layout of a full-size XTTS v2 model.pth (released names, shapes, dtypes), "
        "with the config.json and vocab.json of make_checkpoint.py --size full.",
        "tensors": [[name, list(t.shape), str(t.dtype).removeprefix("torch.")] for name, t in state.items()],
        "config": config,
        "vocab": json.loads((opts.model / "vocab.json").read_text(encoding="utf-8")),
    }
    opts.out.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    elements = sum(t.numel() for t in state.values())
    print(f"{opts.out}: {len(state)} tensors, {elements} elements")


if __name__ == "__main__":
    main()
