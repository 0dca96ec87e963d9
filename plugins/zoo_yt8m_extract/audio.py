"""VGGish's log-mel front end (AudioSet's ``vggish_input`` / ``mel_features`` definitions), in numpy.

16 kHz mono; 25 ms periodic-Hann windows every 10 ms, FFT of 512; magnitudes through 64 triangular mel bands
from 125 to 7500 Hz (HTK mel scale, DC bin zeroed); ``log(mel + 0.01)``. An example is 96 log-mel frames
(0.96 s). YouTube-8M has one audio vector per second: example ``k`` starts at frame ``100 k`` (MediaPipe's
extractor takes 0.96 s windows every second); a last example cut short by the end of the sound is padded
with the log of silence.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
WINDOW_SECONDS = 0.025
HOP_SECONDS = 0.010
MEL_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96
FRAMES_PER_SECOND = 100

_MEL_BREAK_HZ = 700.0
_MEL_HIGH_Q = 1127.0


def frame(data: np.ndarray, window: int, hop: int) -> np.ndarray:
    """Overlapping windows of ``data`` along its first axis: ``[1 + (n - window) // hop, window, ...]``."""
    count = 1 + (data.shape[0] - window) // hop
    if count <= 0:
        return np.zeros((0, window, *data.shape[1:]), dtype=data.dtype)
    index = np.arange(window)[None, :] + hop * np.arange(count)[:, None]
    return data[index]


def hertz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return _MEL_HIGH_Q * np.log(1.0 + np.asarray(hz, dtype=np.float64) / _MEL_BREAK_HZ)


def mel_matrix(fft_bins: int) -> np.ndarray:
    """``[fft_bins, 64]`` triangular weights from FFT bins to mel bands (the DC bin weighs nothing)."""
    nyquist = SAMPLE_RATE / 2.0
    bins_mel = hertz_to_mel(np.linspace(0.0, nyquist, fft_bins))
    edges = np.linspace(hertz_to_mel(MEL_MIN_HZ), hertz_to_mel(MEL_MAX_HZ), MEL_BANDS + 2)
    weights = np.empty((fft_bins, MEL_BANDS))
    for i in range(MEL_BANDS):
        lower, center, upper = edges[i : i + 3]
        rising = (bins_mel - lower) / (center - lower)
        falling = (upper - bins_mel) / (upper - center)
        weights[:, i] = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    return weights


def log_mel(samples: np.ndarray) -> np.ndarray:
    """``[frames, 64]`` log-mel spectrogram of 16 kHz mono samples."""
    window = int(round(SAMPLE_RATE * WINDOW_SECONDS))
    hop = int(round(SAMPLE_RATE * HOP_SECONDS))
    fft = 2 ** int(np.ceil(np.log2(window)))
    hann = 0.5 - 0.5 * np.cos(2 * np.pi / window * np.arange(window))  # periodic
    frames = frame(np.asarray(samples, dtype=np.float64), window, hop)
    spectrum = np.abs(np.fft.rfft(frames * hann, fft))
    return np.log(spectrum @ mel_matrix(fft // 2 + 1) + LOG_OFFSET)


def examples_per_second(samples: np.ndarray, count: int) -> np.ndarray:
    """``[count, 96, 64]`` float32: the 0.96 s example starting at each second ``0 .. count - 1``."""
    mel = log_mel(samples)
    need = FRAMES_PER_SECOND * max(count - 1, 0) + EXAMPLE_FRAMES
    if mel.shape[0] < need:
        silence = np.full((need - mel.shape[0], MEL_BANDS), np.log(LOG_OFFSET))
        mel = np.concatenate([mel, silence]) if mel.size else silence
    starts = FRAMES_PER_SECOND * np.arange(count)
    return (
        np.stack([mel[s : s + EXAMPLE_FRAMES] for s in starts]).astype(np.float32)
        if count
        else np.zeros((0, EXAMPLE_FRAMES, MEL_BANDS), np.float32)
    )
