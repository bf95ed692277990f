#!/usr/bin/env python3
"""Writes a random-weight XTTS v2 model directory of the released size, with torch alone.

    make_random_full.py --out DIR [--seed N] [--stop-bias B]

DIR receives config.json, vocab.json and model.pth (torch.save zip format, {'model': state_dict,
'config': dict}) with exactly the tensor names, shapes and dtypes listed in full_layout.json. Unlike
make_checkpoint.py it needs neither coqui-tts nor torchaudio, so it runs on any machine with
python3 + torch; the result is for timing, not for parity (no calibration, no reference check).

Weights: normal with std 1/sqrt(fan_in) for matrices and convolutions, norm gains 1 and biases 0,
BatchNorm statistics of a unit normal, weight-norm gains at He gain, mel_stats in [1.5, 4.5]. The
speaker encoder's front-end constants (pre-emphasis kernel, Hamming window, HTK mel filterbank) get
their exact values, since they are the same in every released file.
"""

import argparse
import json
import math
from collections import OrderedDict
from pathlib import Path

import torch

LAYOUT = Path(__file__).resolve().parent / "full_layout.json"
SPEAKER_ENCODER = "hifigan_decoder.speaker_encoder."
WAVEFORM_DECODER = "hifigan_decoder.waveform_decoder."
STOP_AUDIO_TOKEN = 1025

# Speaker encoder audio front-end (coqui's defaults for the XTTS HiFi-GAN decoder).
SE_RATE = 16000
SE_FFT = 512
SE_WIN = 400
SE_MELS = 64
SE_PREEMPHASIS = 0.97


def htk_mel_filterbank(rate, n_fft, n_mels):
    """Triangular filters evenly spaced on the HTK mel scale from 0 Hz to Nyquist, unnormalised: [n_fft/2+1, n_mels]."""

    # The top edge in double precision, the rest in float32: the order of rounding of the released buffer.
    mel_max = 2595.0 * math.log10(1.0 + (rate // 2) / 700.0)
    freqs = torch.linspace(0, rate // 2, n_fft // 2 + 1)
    edges = 700.0 * (10.0 ** (torch.linspace(0.0, mel_max, n_mels + 2) / 2595.0) - 1.0)
    widths = edges[1:] - edges[:-1]
    offsets = edges[None, :] - freqs[:, None]
    rising = -offsets[:, :-2] / widths[:-1]
    falling = offsets[:, 2:] / widths[1:]
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


def fixed_buffers():
    """The speaker encoder's constant buffers, by state-dict name."""
    return {
        SPEAKER_ENCODER + "torch_spec.0.filter": torch.tensor([[[-SE_PREEMPHASIS, 1.0]]]),
        SPEAKER_ENCODER + "torch_spec.1.spectrogram.window": torch.hamming_window(SE_WIN),
        SPEAKER_ENCODER + "torch_spec.1.mel_scale.fb": htk_mel_filterbank(SE_RATE, SE_FFT, SE_MELS),
    }


def fan_in(name, shape):
    """Inputs per output unit. GPT-2 blocks store Conv1D weights as [in, out]; everything else as [out, in, ...]."""
    if name.startswith("gpt.gpt.h."):
        return shape[0]
    return math.prod(shape[1:])


def init_tensor(name, shape, dtype, shapes, generator):
    """Random (or constant) values for one tensor; `shapes` maps every name to its shape."""
    if dtype == "int64":  # BatchNorm num_batches_tracked
        return torch.zeros(shape, dtype=torch.int64)
    if dtype != "float32":
        raise SystemExit(f"{LAYOUT}: {name} has dtype {dtype}, expected float32 or int64")

    def normal(std):
        return std * torch.randn(shape, generator=generator)

    if name == "mel_stats":  # per-channel mel scale the conditioning mels are divided by: positive
        return 1.5 + 3.0 * torch.rand(shape, generator=generator)
    if name.endswith("running_var"):
        return torch.ones(shape)
    if name.endswith(("running_mean", ".bias")):
        return torch.zeros(shape)
    if name.endswith("parametrizations.weight.original0"):
        # Weight-norm gain = norm of each weight slice. sqrt(2) is He gain after leaky ReLU; a
        # transposed convolution of kernel k upsamples by k/2 and each output sums 2/k of the taps.
        if ".ups." in name:
            kernel = shapes[name.replace("original0", "original1")][2]
            return torch.full(shape, math.sqrt(kernel / 2))
        return torch.full(shape, math.sqrt(2.0))
    if len(shape) == 1:  # LayerNorm / GroupNorm / BatchNorm / RMSNorm gains
        return torch.ones(shape)
    if name == WAVEFORM_DECODER + "conv_post.weight":
        return normal(0.05 / math.sqrt(fan_in(name, shape)))  # keeps the output tanh out of saturation
    return normal(1.0 / math.sqrt(fan_in(name, shape)))


def read_layout():
    layout = json.loads(LAYOUT.read_text(encoding="utf-8"))
    for key in ("tensors", "config", "vocab"):
        if key not in layout:
            raise SystemExit(f"{LAYOUT}: no '{key}'")
    return layout


def build_state(tensors, seed, stop_bias):
    generator = torch.Generator().manual_seed(seed)
    fixed = fixed_buffers()
    shapes = {name: shape for name, shape, _ in tensors}
    state = OrderedDict()
    for name, shape, dtype in tensors:
        tensor = fixed[name] if name in fixed else init_tensor(name, shape, dtype, shapes, generator)
        if list(tensor.shape) != list(shape):
            raise SystemExit(f"{name}: built {list(tensor.shape)}, layout says {shape}")
        state[name] = tensor
    # Random logits rarely pick the stop code; a bias on it ends free-running sentences early.
    state["gpt.mel_head.bias"][STOP_AUDIO_TOKEN] += stop_bias
    return state


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--stop-bias", type=float, default=0.0, help="added to the stop code's logit bias (higher: shorter speech)"
    )
    opts = parser.parse_args()
    torch.set_num_threads(1)

    layout = read_layout()
    opts.out.mkdir(parents=True, exist_ok=True)
    # Infinity stays a bare literal, as in the released config.json.
    (opts.out / "config.json").write_text(json.dumps(layout["config"], indent=4) + "\n", encoding="utf-8")
    (opts.out / "vocab.json").write_text(json.dumps(layout["vocab"], ensure_ascii=False) + "\n", encoding="utf-8")
    state = build_state(layout["tensors"], opts.seed, opts.stop_bias)
    torch.save({"model": state, "config": layout["config"]}, opts.out / "model.pth")
    elements = sum(t.numel() for t in state.values())
    size = (opts.out / "model.pth").stat().st_size
    print(f"{opts.out}: {len(state)} tensors, {elements} elements, model.pth {size / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
