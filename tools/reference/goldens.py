#!/usr/bin/env python3
"""Writes reference outputs ("goldens") of coqui-tts 0.28.0 for a model directory.

    goldens.py --model DIR --out DIR [--ref WAV] [--ref2 WAV]

fp32 on CPU with 2 threads. Output (schema in tools/reference/README.md):
  cond.safetensors + cond.json         voice conditioning, one clip and two clips
  gen.json + gen_<i>.safetensors       greedy synthesis cases: text ids, codes, latents, waveform
  stream_<i>.safetensors               streaming chunks rendered from the greedy latents of case i
Intermediate values are captured by wrapping coqui's own functions, so every number is the one the
reference computed on its normal path.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import xtts_reference as ref  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from TTS.tts.models import xtts as xtts_module  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]

# Conditioning settings: the direct-call defaults of get_conditioning_latents, and the config.json
# values that synthesize() passes (the two entry points disagree; spec section 7).
DIRECT_COND = {"max_ref_length": 30, "gpt_cond_len": 6, "gpt_cond_chunk_len": 6}
CONFIG_COND = {"max_ref_length": 30, "gpt_cond_len": 30, "gpt_cond_chunk_len": 4}

# Greedy cases. `voice` picks the conditioning computed above; `stream` also writes the streaming
# chunks for the case's latents. Texts are short to keep the files small.
CASES = [
    {"text": "Thank you for calling.", "language": "en", "repetition_penalty": 10.0, "speed": 1.0,
     "voice": "single", "stream": True},
    {"text": "Guten Tag.", "language": "de", "repetition_penalty": 10.0, "speed": 1.0, "voice": "single"},
    {"text": "¿Dónde está la estación?", "language": "es", "repetition_penalty": 10.0, "speed": 1.0,
     "voice": "multi"},
    {"text": "Merci beaucoup.", "language": "fr", "repetition_penalty": 10.0, "speed": 1.3, "voice": "single"},
    {"text": "Thank you for calling.", "language": "en", "repetition_penalty": 1.3, "speed": 1.0,
     "voice": "single"},
]  # fmt: skip

STREAM_CHUNK_SIZE = 20
OVERLAP_WAV_LEN = 1024


def describe(tensors):
    return {key: {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")} for key, t in tensors.items()}


def save(path, tensors):
    save_file({key: t.detach().contiguous().cpu() for key, t in tensors.items()}, str(path))


# ------------------------------------------------------------------------------------------------
# Conditioning


class ConditioningRecorder:
    """Wraps the functions get_conditioning_latents calls and keeps their inputs and outputs."""

    def __init__(self, model):
        self.model = model
        self.mels = []
        self.speaker_inputs = []
        self.speaker_outputs = []
        self.loaded = []
        self._wav_to_mel = xtts_module.wav_to_mel_cloning
        self._load_audio = xtts_module.load_audio
        self._speaker_forward = model.hifigan_decoder.speaker_encoder.forward

    def __enter__(self):
        def wav_to_mel(*args, **kwargs):
            mel = self._wav_to_mel(*args, **kwargs)
            self.mels.append(mel.clone())
            return mel

        def load_audio(path, rate):
            audio = self._load_audio(path, rate)
            self.loaded.append(audio.clone())
            return audio

        def speaker_forward(x, l2_norm=False):
            self.speaker_inputs.append(x.clone())  # forward squeezes its input in place
            out = self._speaker_forward(x, l2_norm=l2_norm)
            self.speaker_outputs.append(out.clone())
            return out

        xtts_module.wav_to_mel_cloning = wav_to_mel
        xtts_module.load_audio = load_audio
        self.model.hifigan_decoder.speaker_encoder.forward = speaker_forward
        return self

    def __exit__(self, *exc):
        xtts_module.wav_to_mel_cloning = self._wav_to_mel
        xtts_module.load_audio = self._load_audio
        del self.model.hifigan_decoder.speaker_encoder.forward


def conditioning(model, clips, settings, suffix):
    """Runs get_conditioning_latents; keys are named NAME + suffix (+ _<clip> for per-clip values)."""
    with ConditioningRecorder(model) as rec:
        cond_latent, speaker_embedding = model.get_conditioning_latents(
            [str(c) for c in clips] if len(clips) > 1 else str(clips[0]), **settings
        )
    max_samples = 22050 * settings["max_ref_length"]
    audios = [a[:, :max_samples] for a in rec.loaded]
    tensors = {
        f"audio_22k{suffix}": torch.cat(audios, dim=-1).flatten(),
        f"cond_mel0{suffix}": rec.mels[0],
        f"cond_latent{suffix}": cond_latent,
        f"speaker_embedding{suffix}": speaker_embedding,
    }
    for i, audio_16k in enumerate(rec.speaker_inputs):
        clip = "" if len(clips) == 1 else f"_{i}"
        tensors[f"audio_16k{suffix}{clip}"] = audio_16k.flatten()
        if len(clips) > 1:
            tensors[f"speaker_embedding{suffix}{clip}"] = rec.speaker_outputs[i].unsqueeze(-1)
    info = {
        "clips": [str(Path(c).relative_to(REPO_ROOT)) if Path(c).is_relative_to(REPO_ROOT) else str(c) for c in clips],
        **settings,
        "cond_chunks": len(rec.mels),
        "cond_mel_frames": [m.shape[-1] for m in rec.mels],
    }
    return tensors, info


def deduplicate_multi(cond):
    """Drops the two-clip tensors that repeat single-clip ones, keeping the files small.

    The first clip goes through identical steps in both cases, so audio_16k_multi_0 equals audio_16k
    and audio_22k_multi is audio_22k followed by the second clip at 22.05 kHz (audio_22k_multi_1).
    """
    first = cond["audio_22k"].numel()
    if not torch.equal(cond["audio_16k_multi_0"], cond["audio_16k"]):
        raise RuntimeError("first clip differs between the single and two-clip conditioning")
    if not torch.equal(cond["audio_22k_multi"][:first], cond["audio_22k"]):
        raise RuntimeError("audio_22k_multi does not start with audio_22k")
    cond["audio_22k_multi_1"] = cond.pop("audio_22k_multi")[first:].clone()
    del cond["audio_16k_multi_0"]


# ------------------------------------------------------------------------------------------------
# Greedy synthesis


class GenerationRecorder:
    """Keeps the HF generate output (codes, raw and processed step logits) and the GPT latents."""

    def __init__(self, model):
        self.model = model
        self.generate_outputs = []
        self.latents = []
        self._generate = model.gpt.generate

    def __enter__(self):
        def generate(*args, **kwargs):
            codes, out = self._generate(
                *args, return_dict_in_generate=True, output_logits=True, output_scores=True, **kwargs
            )
            self.generate_outputs.append((codes.clone(), out))
            return codes

        self.model.gpt.generate = generate
        self._hook = self.model.gpt.register_forward_hook(lambda _m, _i, out: self.latents.append(out.clone()))
        return self

    def __exit__(self, *exc):
        self._hook.remove()
        del self.model.gpt.generate


def greedy_case(model, case, voice):
    cond_latent, speaker_embedding = voice
    normalised = case["text"].strip().lower()
    text_tokens = model.tokenizer.encode(normalised, lang=case["language"].split("-")[0])
    with GenerationRecorder(model) as rec:
        out = model.inference(
            case["text"],
            case["language"],
            cond_latent,
            speaker_embedding,
            repetition_penalty=case["repetition_penalty"],
            speed=case["speed"],
            do_sample=False,
        )
    (codes, gen), latents = rec.generate_outputs[0], rec.latents[0]
    # top-1 minus top-2 of the processed scores: how close each greedy choice was to flipping
    margins = [float(s[0].topk(2).values[0] - s[0].topk(2).values[1]) for s in gen.scores]
    tensors = {
        "text_tokens": torch.tensor(text_tokens, dtype=torch.int64),
        "codes": codes[0].to(torch.int64),
        "latents": latents,
        "prefill_logits": gen.logits[0][0].float(),
        "prefill_scores": gen.scores[0][0].float(),
        "wav": torch.from_numpy(out["wav"]).float().flatten(),
    }
    if case["speed"] != 1.0:
        tensors["latents_scaled"] = torch.from_numpy(out["gpt_latents"]).float()
    stop = model.gpt.stop_audio_token
    info = {
        **case,
        "normalised_text": normalised,
        "n_text_tokens": len(text_tokens),
        "n_codes": int(codes.shape[-1]),
        "ends_with_stop": bool(codes[0, -1] == stop),
        "min_greedy_margin": min(margins),
        "min_greedy_margin_step": margins.index(min(margins)),
        "wav_samples": int(tensors["wav"].numel()),
    }
    return tensors, info


def stream_chunks(model, latents, speaker_embedding, speed):
    """The chunk loop of Xtts.inference_stream, fed with fixed latents instead of sampled ones."""
    length_scale = 1.0 / max(speed, 0.05)
    all_latents = []
    pending = 0
    wav_prev = None
    wav_overlap = None
    chunks = []
    position = 0
    is_end = False
    while not is_end:
        if position < latents.shape[1]:
            all_latents.append(latents[0, position : position + 1])
            position += 1
            pending += 1
        else:
            is_end = True
        if is_end or pending >= STREAM_CHUNK_SIZE:
            gpt_latents = torch.cat(all_latents, dim=0)[None, :]
            if length_scale != 1.0:
                gpt_latents = F.interpolate(
                    gpt_latents.transpose(1, 2), scale_factor=length_scale, mode="linear"
                ).transpose(1, 2)
            wav = model.hifigan_decoder(gpt_latents, g=speaker_embedding)
            chunk, wav_prev, wav_overlap = model.handle_chunks(
                wav.squeeze(), wav_prev, wav_overlap, OVERLAP_WAV_LEN, is_final=is_end
            )
            chunks.append(chunk.clone())
            pending = 0
    return {f"chunk_{i}": c for i, c in enumerate(chunks)}


# ------------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--ref", type=Path, default=REPO_ROOT / "tests/fixtures/ref_24k.wav")
    parser.add_argument("--ref2", type=Path, default=REPO_ROOT / "tests/fixtures/ref2_16k.wav")
    opts = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    opts.out.mkdir(parents=True, exist_ok=True)

    loader = ref.install_wav_loader()
    model, _ = ref.load_model(opts.model)
    common = {"versions": ref.versions(), "device": "cpu", "dtype": "float32", "model": ref.model_summary(opts.model)}

    with torch.inference_mode():
        single, single_info = conditioning(model, [opts.ref], DIRECT_COND, "")
        multi, multi_info = conditioning(model, [opts.ref, opts.ref2], CONFIG_COND, "_multi")
        cond = {**single, **multi}
        deduplicate_multi(cond)
        save(opts.out / "cond.safetensors", cond)
        cond_info = {**common, "audio_loader": loader, "single": single_info, "multi": multi_info}
        cond_info["tensors"] = describe(cond)
        (opts.out / "cond.json").write_text(json.dumps(cond_info, indent=2) + "\n")

        voices = {
            "single": (single["cond_latent"], single["speaker_embedding"]),
            "multi": (multi["cond_latent_multi"], multi["speaker_embedding_multi"]),
        }
        cases = []
        for i, case in enumerate(CASES):
            tensors, info = greedy_case(model, case, voices[case["voice"]])
            save(opts.out / f"gen_{i}.safetensors", tensors)
            info["file"] = f"gen_{i}.safetensors"
            info["tensors"] = describe(tensors)
            if case.get("stream"):
                chunks = stream_chunks(model, tensors["latents"], voices[case["voice"]][1], case["speed"])
                save(opts.out / f"stream_{i}.safetensors", chunks)
                info["stream_file"] = f"stream_{i}.safetensors"
                info["stream"] = {
                    "stream_chunk_size": STREAM_CHUNK_SIZE,
                    "overlap_wav_len": OVERLAP_WAV_LEN,
                    "chunk_samples": [c.numel() for c in chunks.values()],
                }
            cases.append(info)
            print(f"case {i}: {info['n_codes']} codes, {info['wav_samples']} samples", file=sys.stderr)
        gen_info = {**common, "do_sample": False, "cases": cases}
        (opts.out / "gen.json").write_text(json.dumps(gen_info, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
