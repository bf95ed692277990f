#!/usr/bin/env python3
"""Writes a random-initialised XTTS v2 model directory with the released file layout.

    make_checkpoint.py --size tiny|full --out DIR [--legacy] [--seed N] [--no-verify]

DIR receives config.json, model.pth, vocab.json and speakers_xtts.pth. `full` has the released
shapes (963 state-dict keys); `tiny` keeps the same key layout at a few MB (GPT 2x64, 4 heads;
narrow HiFi-GAN and speaker encoder). `--legacy` writes model.pth as the original release container:
the config pickled as an XttsConfig object under the legacy module paths and weight-norm tensors named
weight_g / weight_v. Unless --no-verify, the result is loaded back through coqui-tts (from a copy,
since coqui rewrites legacy files in place) and compared tensor by tensor.
"""

import argparse
import contextlib
import json
import sys
from collections import OrderedDict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import xtts_reference as ref  # noqa: E402
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers  # noqa: E402
from TTS.tts.configs.xtts_config import XttsArgs, XttsAudioConfig, XttsConfig  # noqa: E402
from TTS.tts.models.xtts import Xtts  # noqa: E402

# ------------------------------------------------------------------------------------------------
# Vocabulary

SPECIAL_IDS = {"[STOP]": 0, "[UNK]": 1, "[SPACE]": 2, "[START]": 261}

# Ids of the language tokens. Those of the v1-era vocab are kept where they are known; the others
# are placed just past them (tiny) or at the top of the 6681-id range (full).
KNOWN_LANGUAGE_IDS = {
    "en": 259, "de": 260, "fr": 262, "ru": 267, "es": 284, "it": 285,
    "pt": 286, "cs": 293, "pl": 294, "tr": 295, "nl": 297,
}  # fmt: skip
EXTRA_LANGUAGE_IDS = {
    "tiny": {"ar": 298, "zh-cn": 299, "ja": 300, "hu": 301, "ko": 302, "hi": 303},
    "full": {"ar": 5022, "zh-cn": 5023, "ja": 5412, "hu": 6678, "ko": 6679, "hi": 6680},
}
MAX_ID = {"tiny": 303, "full": 6680}

LETTERS = "abcdefghijklmnopqrstuvwxyz"
DIGITS = "0123456789"
PUNCTUATION = ".,!?'\"-:;()&%/"
ACCENTED = "àâäáãåçéèêëíìîïñóòôöõúùûüÿßæœąćęłńśźżčďěňřšťůžğışőű"
MERGES = [("t", "h"), ("th", "e"), ("i", "n"), ("in", "g"), ("e", "r"), ("a", "n"), ("o", "n"), ("e", "n")]


def build_vocab(size):
    """Returns (token -> id, merges, specials). Every id from 0 to MAX_ID[size] is used."""
    specials = dict(SPECIAL_IDS)
    for lang in ref.LANGUAGES:
        specials[f"[{lang}]"] = KNOWN_LANGUAGE_IDS.get(lang, EXTRA_LANGUAGE_IDS[size].get(lang))
    assert sorted(specials) == sorted(set(specials)) and None not in specials.values()

    vocab = dict(specials)
    taken = set(specials.values())
    next_id = 0

    def add(token):
        nonlocal next_id
        while next_id in taken:
            next_id += 1
        vocab[token] = next_id
        taken.add(next_id)

    for ch in LETTERS + DIGITS + PUNCTUATION + ACCENTED:
        add(ch)
    for left, right in MERGES:
        add(left + right)
    # Filler entries: unreachable strings (no merge produces them) that only occupy ids.
    for i in range(MAX_ID[size] + 1):
        if i not in taken:
            vocab[f"<filler_{i}>"] = i
            taken.add(i)
    assert max(vocab.values()) == MAX_ID[size] and len(vocab) == MAX_ID[size] + 1
    return vocab, MERGES, specials


def write_vocab(path, size):
    vocab, merges, specials = build_vocab(size)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    ordered = sorted(specials.items(), key=lambda item: item[1])
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token, _ in ordered])
    tokenizer.save(str(path))
    # The ids must survive the round trip through the file.
    reloaded = Tokenizer.from_file(str(path))
    for token, expected in specials.items():
        got = reloaded.token_to_id(token)
        if got != expected:
            raise RuntimeError(f"{path}: {token} has id {got}, expected {expected}")
    return max(reloaded.get_vocab().values()) + 1


# ------------------------------------------------------------------------------------------------
# Config

TINY_ARGS = {"gpt_layers": 2, "gpt_n_model_channels": 64, "gpt_n_heads": 4, "decoder_input_dim": 64, "d_vector_dim": 64}
TINY_DECODER = {
    "upsample_initial_channel": 32,
    "speaker_num_filters": [8, 16, 32, 64],
    "speaker_layers": [1, 1, 1, 1],
    "d_vector_dim": TINY_ARGS["d_vector_dim"],
}


def build_config(size, number_text_tokens):
    """XttsConfig with the v2.0.3 values of the released config.json (spec 1.3)."""
    config = XttsConfig()
    args = config.model_args
    args.gpt_number_text_tokens = number_text_tokens
    args.gpt_start_text_token = SPECIAL_IDS["[START]"]
    args.gpt_stop_text_token = SPECIAL_IDS["[STOP]"]
    args.gpt_num_audio_tokens = 1026
    args.gpt_start_audio_token = 1024
    args.gpt_stop_audio_token = 1025
    args.gpt_use_perceiver_resampler = True
    if size == "tiny":
        for key, value in TINY_ARGS.items():
            setattr(args, key, value)
    config.temperature = 0.75
    config.length_penalty = 1.0
    config.repetition_penalty = 5.0
    config.top_k = 50
    config.top_p = 0.85
    config.num_gpt_outputs = 1
    config.gpt_cond_len = 30
    config.gpt_cond_chunk_len = 4
    config.max_ref_len = 30
    config.sound_norm_refs = False
    return config


# ------------------------------------------------------------------------------------------------
# Weights

# Signal-processing constants of the speaker encoder front-end. They are the same in every released
# file (pre-emphasis kernel, Hamming window, HTK mel filterbank), so they keep their exact values.
FIXED_BUFFERS = ("torch_spec.0.filter", "torch_spec.1.spectrogram.window", "torch_spec.1.mel_scale.fb")


def gpt_std(name, tensor):
    """Standard deviation for a GPT weight, or None to keep the module's own init.

    HF's GPT-2 init (std 0.02, zero biases) leaves a random model whose hidden state ignores its
    input: every text then decodes to the same codes. Unit-gain weights (std 1/sqrt(fan_in)) and
    O(1) embeddings make the codes depend on text, voice and history, which is what parity tests need.
    """
    if name.startswith("gpt.gpt.h.") and name.endswith(".weight") and tensor.dim() == 2:
        return tensor.shape[0] ** -0.5  # HF Conv1D weight is [in, out]
    if name in ("gpt.text_embedding.weight", "gpt.mel_embedding.weight"):
        return 1.0
    if name in ("gpt.text_pos_embedding.emb.weight", "gpt.mel_pos_embedding.emb.weight"):
        return 0.5
    if name in ("gpt.mel_head.weight", "gpt.text_head.weight"):
        return 2.0 * tensor.shape[1] ** -0.5  # nn.Linear weight is [out, in]; logits with std ~2
    if name.startswith("gpt.gpt.h.") and name.endswith(".bias") and "ln_" not in name:
        return 0.1
    return None


def randomise(state, generator):
    """Gives every tensor non-trivial values so that a mix-up of any two tensors changes the output.

    Module init already draws random weights; this perturbs what init leaves constant (norm gains and
    biases, zero biases, BatchNorm statistics, weight-norm gains, mel_stats).
    """

    def randn_like(t):
        return torch.randn(t.shape, generator=generator, dtype=t.dtype)

    def uniform_like(t, low, high):
        return low + (high - low) * torch.rand(t.shape, generator=generator, dtype=t.dtype)

    with torch.no_grad():
        for name, tensor in state.items():
            if name.endswith(FIXED_BUFFERS):
                continue
            std = gpt_std(name, tensor)
            if std is not None:
                tensor.copy_(std * randn_like(tensor))
            elif name.endswith("num_batches_tracked"):
                tensor.fill_(int(torch.randint(100, 100000, (1,), generator=generator)))
            elif name == "mel_stats":
                tensor.copy_(uniform_like(tensor, 1.5, 4.5))
            elif name.endswith("running_var"):
                tensor.copy_(uniform_like(tensor, 0.5, 2.0))
            elif name.endswith("running_mean"):
                tensor.copy_(0.2 * randn_like(tensor))
            elif name.endswith("parametrizations.weight.original0"):
                tensor.mul_(uniform_like(tensor, 0.7, 1.3))
            elif tensor.numel() > 0 and bool((tensor == tensor.flatten()[0]).all()):
                base = float(tensor.flatten()[0])
                scale = 0.1 if base != 0.0 else 0.02
                tensor.copy_(base + scale * randn_like(tensor))


# Added to the stop-code logit bias. Random logits rarely favour code 1025, so greedy decoding would
# run to the 602-code cap; with this offset short texts stop after some tens of codes (calibrated on
# the tiny model, seed 0: 26 to 107 codes for the golden texts).
STOP_LOGIT_OFFSET = 3.4


def build_model(size, config, seed):
    torch.manual_seed(seed)
    model = Xtts(config)
    if size == "tiny":
        ref.resize_decoder(model, TINY_DECODER)
    # state_dict() before .eval(): eval adds the gpt.gpt_inference.* aliases, which the release lacks.
    state = model.state_dict()
    generator = torch.Generator().manual_seed(seed + 1)
    randomise(state, generator)
    with torch.no_grad():
        state["gpt.mel_head.bias"][config.model_args.gpt_stop_audio_token] += STOP_LOGIT_OFFSET
    return model, state


def make_speakers(config, generator):
    """Two stored voices with the shapes of speakers_xtts.pth."""
    dim = config.model_args.gpt_n_model_channels
    d = config.model_args.d_vector_dim
    speakers = {}
    for name in ("Alma Fixture", "Bruno Fixture"):
        embedding = torch.randn(1, d, 1, generator=generator)
        speakers[name] = {
            "gpt_cond_latent": torch.randn(1, 32, dim, generator=generator),
            "speaker_embedding": embedding / embedding.norm(dim=1, keepdim=True),
        }
    return speakers


# ------------------------------------------------------------------------------------------------
# Containers

WEIGHT_NORM_SUFFIXES = {
    ".parametrizations.weight.original0": ".weight_g",
    ".parametrizations.weight.original1": ".weight_v",
}


def legacy_state(state):
    """Same tensors under the pre-parametrization weight-norm names."""
    out = OrderedDict()
    for key, tensor in state.items():
        for new, old in WEIGHT_NORM_SUFFIXES.items():
            if key.endswith(new):
                key = key[: -len(new)] + old
        out[key] = tensor
    return out


@contextlib.contextmanager
def legacy_class_paths():
    """Pickles XttsArgs / XttsAudioConfig under TTS.tts.models.xtts, their module in the release."""
    saved = {cls: cls.__module__ for cls in (XttsArgs, XttsAudioConfig)}
    try:
        for cls in saved:
            cls.__module__ = "TTS.tts.models.xtts"
        yield
    finally:
        for cls, module in saved.items():
            cls.__module__ = module


def save_checkpoint(path, state, config, legacy):
    if legacy:
        with legacy_class_paths():
            torch.save({"model": legacy_state(state), "config": config}, path)
    else:
        torch.save({"model": state, "config": config.to_dict()}, path)


def verify(out_dir, state):
    """Loads the directory with coqui-tts and checks every tensor came back unchanged."""
    model, _ = ref.load_model(out_dir, eval_mode=False)
    loaded = model.state_dict()
    if sorted(loaded) != sorted(state):
        missing = sorted(set(state) - set(loaded))[:5]
        extra = sorted(set(loaded) - set(state))[:5]
        raise RuntimeError(f"{out_dir}: key sets differ after loading (missing {missing}, extra {extra})")
    for key, tensor in state.items():
        if not torch.equal(loaded[key], tensor):
            raise RuntimeError(f"{out_dir}: tensor {key} changed after loading")
    return len(loaded)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["tiny", "full"], required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--legacy", action="store_true", help="write model.pth as the original release container")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-verify", action="store_true", help="skip loading the result back through coqui")
    opts = parser.parse_args()
    torch.set_num_threads(2)

    opts.out.mkdir(parents=True, exist_ok=True)
    number_text_tokens = write_vocab(opts.out / "vocab.json", opts.size)
    config = build_config(opts.size, number_text_tokens)
    config.save_json(str(opts.out / "config.json"))
    model, state = build_model(opts.size, config, opts.seed)
    save_checkpoint(opts.out / "model.pth", state, config, opts.legacy)
    speakers = make_speakers(config, torch.Generator().manual_seed(opts.seed + 2))
    torch.save(speakers, opts.out / "speakers_xtts.pth")

    summary = {
        "size": opts.size,
        "legacy": opts.legacy,
        "keys": len(state),
        "elements": sum(t.numel() for t in state.values()),
        "model_pth_bytes": (opts.out / "model.pth").stat().st_size,
        **ref.decoder_sizes(state),
        **ref.model_summary(opts.out),
    }
    if not opts.no_verify:
        summary["verified_keys"] = verify(opts.out, state)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
