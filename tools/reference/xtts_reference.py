"""Shared helpers for the XTTS v2 reference scripts (coqui-tts 0.28.0).

Everything here wraps the reference implementation; nothing re-implements the model. The scripts
import this module first because it prepares the environment that `import TTS` needs.
"""

import importlib.machinery
import importlib.metadata
import importlib.util
import json
import shutil
import sys
import tempfile
import types
import wave
from pathlib import Path

import numpy as np
import torch

# coqui-tts refuses to import on torch >= 2.9 unless torchcodec is installed, although only
# `load_audio` uses it (through torchaudio.load). Without it we register an empty placeholder module
# so the import succeeds, and `install_wav_loader()` replaces the one function that needs it.
TORCHCODEC_AVAILABLE = importlib.util.find_spec("torchcodec") is not None
if not TORCHCODEC_AVAILABLE:
    _placeholder = types.ModuleType("torchcodec")
    _placeholder.__spec__ = importlib.machinery.ModuleSpec("torchcodec", None)
    sys.modules["torchcodec"] = _placeholder

import torchaudio  # noqa: E402
from TTS.encoder.models.resnet import ResNetSpeakerEncoder  # noqa: E402
from TTS.tts.configs.xtts_config import XttsConfig  # noqa: E402
from TTS.tts.models import xtts as xtts_module  # noqa: E402
from TTS.tts.models.xtts import Xtts  # noqa: E402
from TTS.vocoder.models.hifigan_generator import HifiganGenerator  # noqa: E402

LANGUAGES = ["en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru", "nl", "cs", "ar", "zh-cn", "hu", "ko", "ja", "hi"]

# HiFi-GAN hyper-parameters that the released model fixes and the fixture keeps (only widths shrink).
UPSAMPLE_RATES = [8, 8, 2, 2]
UPSAMPLE_KERNELS = [16, 16, 4, 4]
RESBLOCK_KERNELS = [3, 7, 11]
RESBLOCK_DILATIONS = [[1, 3, 5], [1, 3, 5], [1, 3, 5]]

SPEAKER_PREFIX = "hifigan_decoder.speaker_encoder."
GENERATOR_PREFIX = "hifigan_decoder.waveform_decoder."


# ------------------------------------------------------------------------------------------------
# Audio


def read_wav(path):
    """Reads a PCM WAV file with the standard library. Returns (float32 tensor [channels, samples], rate)."""
    with wave.open(str(path), "rb") as f:
        channels, width, rate, frames = f.getnchannels(), f.getsampwidth(), f.getframerate(), f.getnframes()
        raw = f.readframes(frames)
    if width == 2:
        data = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 4:
        data = np.frombuffer(raw, dtype="<i4").astype(np.float32) / 2147483648.0
    elif width == 1:
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    else:
        raise ValueError(f"{path}: unsupported sample width {width} bytes")
    data = data.reshape(-1, channels).T.copy()
    return torch.from_numpy(data), rate


def load_audio_like_coqui(path, sampling_rate):
    """What coqui's `load_audio` does, minus the torchcodec decoder: mono mean, resample, clip."""
    audio, rate = read_wav(path)
    if audio.size(0) != 1:
        audio = torch.mean(audio, dim=0, keepdim=True)
    if rate != sampling_rate:
        audio = torchaudio.functional.resample(audio, rate, sampling_rate)
    audio.clip_(-1, 1)
    return audio


def install_wav_loader():
    """Makes coqui load references without torchcodec when it is missing. Returns a description."""
    if TORCHCODEC_AVAILABLE:
        return "coqui load_audio (torchaudio/torchcodec)"
    xtts_module.load_audio = load_audio_like_coqui
    return (
        "coqui load_audio replaced: torchcodec missing; WAV read with the wave module, channel mean, "
        "torchaudio.functional.resample to 22050, clip to [-1, 1]"
    )


# ------------------------------------------------------------------------------------------------
# Model sizes that the released config does not describe


def decoder_sizes(state_dict):
    """Reads the HiFi-GAN and speaker-encoder widths from tensor shapes (the config cannot express them)."""
    layers = []
    filters = []
    for layer in range(1, 5):
        prefix = f"{SPEAKER_PREFIX}layer{layer}."
        blocks = {k[len(prefix) :].split(".")[0] for k in state_dict if k.startswith(prefix)}
        layers.append(len(blocks))
        filters.append(state_dict[f"{prefix}0.conv1.weight"].shape[0])
    return {
        "upsample_initial_channel": state_dict[f"{GENERATOR_PREFIX}conv_pre.weight"].shape[0],
        "speaker_num_filters": filters,
        "speaker_layers": layers,
        "d_vector_dim": state_dict[f"{SPEAKER_PREFIX}fc.weight"].shape[0],
    }


def resize_decoder(model, sizes):
    """Swaps coqui's fixed-size HiFi-GAN and speaker encoder for instances of the same classes at `sizes`."""
    args = model.args
    decoder = model.hifigan_decoder
    decoder.waveform_decoder = HifiganGenerator(
        args.decoder_input_dim,
        1,
        "1",
        RESBLOCK_DILATIONS,
        RESBLOCK_KERNELS,
        UPSAMPLE_KERNELS,
        sizes["upsample_initial_channel"],
        UPSAMPLE_RATES,
        inference_padding=0,
        cond_channels=args.d_vector_dim,
        conv_pre_weight_norm=False,
        conv_post_weight_norm=False,
        conv_post_bias=False,
        cond_in_each_up_layer=args.cond_d_vector_in_each_upsampling_layer,
    )
    decoder.speaker_encoder = ResNetSpeakerEncoder(
        input_dim=64,
        proj_dim=sizes["d_vector_dim"],
        layers=sizes["speaker_layers"],
        num_filters=sizes["speaker_num_filters"],
        log_input=True,
        use_torch_spec=True,
        audio_config=decoder.speaker_encoder_audio_config,
    )


RELEASED_DECODER = {
    "upsample_initial_channel": 512,
    "speaker_num_filters": [32, 64, 128, 256],
    "speaker_layers": [3, 4, 6, 3],
    "d_vector_dim": 512,
}


# ------------------------------------------------------------------------------------------------
# Loading a model directory through coqui's own loader


def read_checkpoint_state(path):
    """Loads model.pth without the safety checks (the legacy container pickles config classes)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    return checkpoint["model"]


def load_model(model_dir, eval_mode=True):
    """Loads a model directory with `Xtts.load_checkpoint`, exactly as coqui-tts does for the release.

    coqui may rewrite model.pth in place (legacy container), so it reads a temporary copy. A fixture
    with shrunken decoder widths gets matching module instances right after coqui builds its own.
    """
    model_dir = Path(model_dir)
    config = XttsConfig()
    config.load_json(str(model_dir / "config.json"))
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "model.pth"
        shutil.copyfile(model_dir / "model.pth", copy)
        state = read_checkpoint_state(copy)
        sizes = decoder_sizes(_strip_trainer_prefix(state))
        del state
        model = Xtts(config)
        if sizes != RELEASED_DECODER:
            build = model.init_models

            def init_models_resized():
                build()
                resize_decoder(model, sizes)

            model.init_models = init_models_resized
        model.load_checkpoint(
            config,
            checkpoint_dir=str(model_dir),
            checkpoint_path=str(copy),
            vocab_path=str(model_dir / "vocab.json"),
            speaker_file_path=str(model_dir / "speakers_xtts.pth"),
            eval=eval_mode,
            strict=True,
        )
    return model, config


def _strip_trainer_prefix(state):
    return {(k[len("xtts.") :] if k.startswith("xtts.") else k): v for k, v in state.items()}


def model_summary(model_dir):
    """Sizes that tests need: model dim D, speaker dim d, vocab size, layer counts."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    args = config["model_args"]
    return {
        "gpt_n_model_channels": args["gpt_n_model_channels"],
        "gpt_layers": args["gpt_layers"],
        "gpt_n_heads": args["gpt_n_heads"],
        "d_vector_dim": args["d_vector_dim"],
        "gpt_number_text_tokens": args["gpt_number_text_tokens"],
        "gpt_num_audio_tokens": args["gpt_num_audio_tokens"],
    }


def versions():
    names = ["torch", "torchaudio", "coqui-tts", "transformers", "tokenizers"]
    return {name: importlib.metadata.version(name) for name in names}
