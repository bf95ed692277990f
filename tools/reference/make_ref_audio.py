#!/usr/bin/env python3
"""Writes deterministic synthetic voice-like reference clips (mono int16 WAV).

    make_ref_audio.py --out FILE --rate HZ --seconds S --f0 HZ [--seed N]

The signal is a glottal pulse train with a drifting pitch, shaped by three moving formant
resonances (vowel-like syllables), with short noise bursts for consonants and pauses in between.
It has the spectral structure the conditioning encoder and speaker encoder expect, with no recording.
"""

import argparse
import wave
from pathlib import Path

import numpy as np

# (F1, F2, F3) in Hz for a few vowels; bandwidths are fixed below.
VOWELS = [(730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010), (570, 840, 2410), (300, 870, 2240)]
BANDWIDTHS = (80.0, 100.0, 140.0)


def plan_segments(seconds, rng):
    """Alternating syllables and pauses: list of (start, end, voiced)."""
    segments = []
    t = 0.15
    while t < seconds - 0.3:
        length = rng.uniform(0.14, 0.34)
        segments.append((t, min(t + length, seconds - 0.1), True))
        t += length
        # most gaps are short joins inside a phrase; some are phrase pauses
        t += rng.uniform(0.25, 0.5) if rng.random() < 0.2 else rng.uniform(0.02, 0.07)
    return segments


def synthesize(rate, seconds, f0_base, seed):
    rng = np.random.default_rng(seed)
    n = int(round(rate * seconds))
    t = np.arange(n) / rate

    segments = plan_segments(seconds, rng)
    envelope = np.zeros(n)
    formants = np.zeros((n, 3))
    formants[:] = VOWELS[0]
    burst = np.zeros(n)
    for start, end, _ in segments:
        a, b = int(start * rate), int(end * rate)
        ramp = min(int(0.03 * rate), (b - a) // 2)
        env = np.ones(b - a)
        env[:ramp] = np.sin(np.linspace(0, np.pi / 2, ramp)) ** 2
        env[-ramp:] = np.cos(np.linspace(0, np.pi / 2, ramp)) ** 2
        envelope[a:b] = np.maximum(envelope[a:b], env * rng.uniform(0.6, 1.0))
        v0 = np.array(VOWELS[rng.integers(len(VOWELS))], dtype=float)
        v1 = np.array(VOWELS[rng.integers(len(VOWELS))], dtype=float)
        w = np.linspace(0, 1, b - a)[:, None]
        formants[a:b] = (1 - w) * v0 + w * v1
        if rng.random() < 0.5:
            length = int(0.04 * rate)
            burst[max(a - length, 0) : a] = rng.uniform(0.3, 0.6)

    # Pitch: slow drift, phrase declination and a little jitter.
    f0 = f0_base * (1 + 0.12 * np.sin(2 * np.pi * 0.35 * t) + 0.05 * np.sin(2 * np.pi * 1.7 * t + 1.0))
    f0 *= 1 - 0.08 * (t / seconds)
    f0 *= 1 + 0.004 * rng.standard_normal(n)
    phase = np.cumsum(f0 / rate) % 1.0
    open_quotient = 0.6
    pulse = np.where(phase < open_quotient, np.sin(np.pi * phase / open_quotient) ** 2, 0.0)
    source = np.diff(pulse, prepend=0.0) * envelope
    source += 0.02 * rng.standard_normal(n) * envelope  # aspiration
    source += 0.03 * rng.standard_normal(n) * burst  # consonant-like noise bursts

    out = source
    for k in range(3):
        out = resonate(out, formants[:, k], BANDWIDTHS[k], rate)
    out = 0.7 * out / np.max(np.abs(out))
    return out + 3e-4 * rng.standard_normal(n)  # recording noise floor, about -70 dB


def resonate(x, freqs, bandwidth, rate):
    """Two-pole (Klatt) resonator, unity gain at DC, centre frequency following `freqs` per sample."""
    r = np.exp(-np.pi * bandwidth / rate)
    a1 = -2 * r * np.cos(2 * np.pi * np.minimum(freqs, 0.45 * rate) / rate)
    a2 = r * r
    gain = 1 + a1 + a2
    y = np.zeros_like(x)
    y1 = y2 = 0.0
    for i in range(len(x)):
        v = gain[i] * x[i] - a1[i] * y1 - a2 * y2
        y[i] = v
        y2, y1 = y1, v
    return y


def write_wav(path, samples, rate):
    """Mono int16 PCM from floats in [-1, 1]."""
    pcm = np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--rate", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--f0", type=float, required=True, help="mean pitch in Hz")
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args()
    write_wav(opts.out, synthesize(opts.rate, opts.seconds, opts.f0, opts.seed), opts.rate)


if __name__ == "__main__":
    main()
