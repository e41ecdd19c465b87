"""Audio: decoding, resampling to 16 kHz mono, AST's log-mel filterbank, SpecAugment masking.

:func:`fbank` reproduces Kaldi's ``fbank`` as used by AST (and by transformers' ``ASTFeatureExtractor``):
25 ms Hann ("hanning", symmetric) frames every 10 ms without padding (snip edges), per-frame DC-offset
removal and 0.97 pre-emphasis, 512-point power spectrum, ``num_mel_bins`` triangular filters on the
Kaldi mel scale (20 Hz to Nyquist, triangles in mel space), natural log floored at float32 eps.
Frames are cut with ``Tensor.unfold`` and transformed with ``torch.fft.rfft`` (``torch.stft`` cannot
remove the DC offset and pre-emphasise per frame, as Kaldi does). :func:`ast_features` pads/truncates
to ``max_length`` frames and normalises as AST does: ``(fbank - mean) / (2 * std)``.

Decoding uses soundfile (FLAC/WAV/OGG, what the converters write) and falls back to PyAV for
anything else (mp3, m4a, webm), which also resamples (libswresample).
"""

from __future__ import annotations

import io
import math
import random

import numpy as np
import torch

from scaling.common.media import AST_MEAN, AST_STD, SAMPLE_RATE

_MEL_CACHE: dict[tuple, torch.Tensor] = {}


def _mel(f):
    return 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def kaldi_mel_banks(num_mel_bins: int, fft_size: int = 512, sample_rate: int = SAMPLE_RATE,
                    low_freq: float = 20.0, high_freq: float | None = None) -> torch.Tensor:
    """Triangular mel filters ``[fft_size // 2 + 1, num_mel_bins]`` (Kaldi mel scale, in mel space)."""
    key = (num_mel_bins, fft_size, sample_rate, low_freq, high_freq)
    if key not in _MEL_CACHE:
        high = high_freq if high_freq else sample_rate / 2
        mel_points = np.linspace(_mel(low_freq), _mel(high), num_mel_bins + 2)
        bin_mel = _mel(np.arange(fft_size // 2 + 1) * sample_rate / fft_size)
        left, center, right = mel_points[:-2], mel_points[1:-1], mel_points[2:]
        up = (bin_mel[:, None] - left[None]) / (center - left)[None]
        down = (right[None] - bin_mel[:, None]) / (right - center)[None]
        banks = np.maximum(0.0, np.minimum(up, down))
        _MEL_CACHE[key] = torch.from_numpy(banks)
    return _MEL_CACHE[key]


def fbank(waveform: torch.Tensor | np.ndarray, num_mel_bins: int = 128, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Kaldi-style log-mel filterbank of a mono waveform (floats in [-1, 1]) → ``[frames, num_mel_bins]``."""
    x = torch.as_tensor(np.asarray(waveform, dtype=np.float64) if isinstance(waveform, np.ndarray) else waveform, dtype=torch.float64).flatten()
    frame, hop, nfft = int(0.025 * sample_rate), int(0.010 * sample_rate), 1
    while nfft < frame:
        nfft *= 2
    if x.numel() < frame:
        return torch.zeros(0, num_mel_bins)
    frames = x.unfold(0, frame, hop)  # [T, frame]
    frames = frames - frames.mean(dim=1, keepdim=True)
    pre = frames.clone()
    pre[:, 1:] = frames[:, 1:] - 0.97 * frames[:, :-1]
    pre[:, 0] = frames[:, 0] * (1 - 0.97)
    window = torch.from_numpy(np.hanning(frame))
    spec = torch.fft.rfft(pre * window, n=nfft).abs().pow(2)  # [T, nfft/2 + 1]
    mel = spec @ kaldi_mel_banks(num_mel_bins, nfft, sample_rate)
    return torch.log(torch.clamp(mel, min=float(np.finfo(np.float32).eps))).float()


def ast_features(waveform, num_mel_bins: int = 128, max_length: int = 1024, mean: float = AST_MEAN,
                 std: float = AST_STD, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """AST input ``[max_length, num_mel_bins]``: fbank, zero-padded/truncated, ``(x - mean) / (2 std)``."""
    fb = fbank(waveform, num_mel_bins, sample_rate)
    n = fb.shape[0]
    if n < max_length:
        fb = torch.cat([fb, fb.new_zeros(max_length - n, num_mel_bins)])
    else:
        fb = fb[:max_length]
    return (fb - mean) / (2 * std)


def spec_augment(features: torch.Tensor, freq_mask: int, time_mask: int, rng: random.Random) -> torch.Tensor:
    """One frequency mask of width U[0, freq_mask) and one time mask of width U[0, time_mask), set to 0
    (torchaudio's FrequencyMasking/TimeMasking) on normalised ``[frames, mel]`` features."""
    x = features.clone()
    t, f = x.shape
    if freq_mask > 0:
        width = rng.randrange(min(freq_mask, f))
        start = rng.randrange(f - width + 1)
        x[:, start : start + width] = 0
    if time_mask > 0:
        width = rng.randrange(min(time_mask, t))
        start = rng.randrange(t - width + 1)
        x[start : start + width, :] = 0
    return x


def _mono(data: np.ndarray) -> np.ndarray:
    return data.mean(axis=1) if data.ndim == 2 else data


def decode_with_av(data: bytes, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Any audio container/codec PyAV (FFmpeg) reads → mono float32 at ``sample_rate``."""
    import av

    out = []
    with av.open(io.BytesIO(data)) as container:
        if not container.streams.audio:
            raise ValueError("no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        for frame in container.decode(audio=0):
            for rf in resampler.resample(frame):
                out.append(rf.to_ndarray().reshape(-1))
        for rf in resampler.resample(None):
            out.append(rf.to_ndarray().reshape(-1))
    if not out:
        raise ValueError("no audio samples decoded")
    return np.concatenate(out).astype(np.float32)


def resample(x: np.ndarray, orig: int, target: int, width: int = 16) -> np.ndarray:
    """Band-limited polyphase resampling (Hann-windowed sinc, ``width`` zero crossings per side)."""
    if orig == target:
        return x
    g = math.gcd(orig, target)
    up, down = target // g, orig // g
    n_out = int(math.ceil(len(x) * up / down))
    cutoff = min(1.0, up / down)
    steps = np.arange(n_out, dtype=np.int64) * down
    phase, base = steps % up, steps // up
    offs = np.arange(-width + 1, width + 1)
    dist = (np.arange(up) / up)[:, None] - offs[None, :]
    kernel = cutoff * np.sinc(cutoff * dist) * (0.5 + 0.5 * np.cos(np.pi * dist / width)) * (np.abs(dist) < width)
    padded = np.concatenate([np.zeros(width, np.float32), x.astype(np.float32), np.zeros(width + 1, np.float32)])
    taps = padded[base[:, None] + offs[None, :] + width]
    return np.einsum("ij,ij->i", taps, kernel.astype(np.float32)[phase]).astype(np.float32)


def decode_audio(data: bytes, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Audio bytes → mono float32 waveform at ``sample_rate`` (soundfile, else PyAV)."""
    import soundfile as sf

    try:
        wav, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except Exception:  # noqa: BLE001 - formats libsndfile does not read: let FFmpeg try
        return decode_with_av(data, sample_rate)
    wav = _mono(np.asarray(wav))
    if wav.size == 0:
        raise ValueError("empty audio")
    return resample(wav, sr, sample_rate) if sr != sample_rate else wav


def encode_flac(wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Mono float waveform → 16-bit FLAC bytes (what converters store)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(wav, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()
