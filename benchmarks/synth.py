"""Music-like test signals: chords, bass, melody and drums on a beat grid.

Benchmarks need audio on which every analysis step does real work: HPSS
must separate sustained tones from drum hits, the tempo estimator must find
a beat, and lossy encoders must spend their bitrate.  Sine tones or noise
would flatter every one of them.  Each track is deterministic per seed and
has its own tempo, key, mode and arrangement; sections with and without
drums give it some structure.
"""

from __future__ import annotations

import numpy as np

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
PROGRESSIONS = ((0, 5, 3, 4), (0, 3, 4, 4), (0, 4, 5, 3), (5, 3, 0, 4))


def _hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69) / 12)


class _Voices:
    """Caches one waveform per (instrument, pitch, length) so a 5-minute track renders fast."""

    def __init__(self, sr: int, rng: np.random.Generator) -> None:
        self.sr = sr
        self.rng = rng
        self.cache: dict[tuple, np.ndarray] = {}
        self.brightness = rng.uniform(0.4, 0.8)  # partial roll-off: a track's timbre

    def tone(self, midi: int, seconds: float, attack: float, decay: float, partials: int) -> np.ndarray:
        key = ("tone", midi, round(seconds, 3), attack, decay, partials)
        if key not in self.cache:
            n = int(seconds * self.sr)
            t = np.arange(n) / self.sr
            f0 = _hz(midi)
            wave = np.zeros(n)
            for k in range(1, partials + 1):
                if f0 * k < self.sr / 2 - 500:
                    wave += self.brightness ** (k - 1) * np.sin(2 * np.pi * f0 * k * t + k)
            env = np.minimum(1.0, t / attack) * np.exp(-t / decay)
            fade = min(n, int(0.01 * self.sr))
            env[n - fade :] *= np.linspace(1.0, 0.0, fade)
            self.cache[key] = (wave * env).astype(np.float32)
        return self.cache[key]

    def drum(self, kind: str, variant: int) -> np.ndarray:
        key = ("drum", kind, variant)
        if key not in self.cache:
            rng = np.random.default_rng(hash(key) & 0xFFFF)
            sr = self.sr
            if kind == "kick":
                t = np.arange(int(0.35 * sr)) / sr
                freq = 50 + 90 * np.exp(-t / 0.03)
                wave = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / 0.12)
            elif kind == "snare":
                t = np.arange(int(0.25 * sr)) / sr
                noise = np.diff(rng.standard_normal(len(t) + 1))  # brighter than white
                wave = 0.6 * noise * np.exp(-t / 0.07) + 0.5 * np.sin(2 * np.pi * 190 * t) * np.exp(-t / 0.05)
            else:  # hat
                t = np.arange(int(0.08 * sr)) / sr
                noise = np.diff(rng.standard_normal(len(t) + 2), n=2)
                wave = 0.25 * noise * np.exp(-t / 0.015)
            self.cache[key] = wave.astype(np.float32)
        return self.cache[key]


def _add(buf: np.ndarray, start: int, wave: np.ndarray, gain: float, pan: float) -> None:
    end = min(len(buf), start + len(wave))
    if start >= end:
        return
    seg = wave[: end - start] * gain
    buf[start:end, 0] += seg * (1.0 - pan)
    buf[start:end, 1] += seg * (1.0 + pan)


def track(seed: int, seconds: float, sr: int = 44100) -> tuple[np.ndarray, float]:
    """Render one stereo track; return (frames x 2 float32 samples, tempo in BPM)."""
    rng = np.random.default_rng(seed)
    bpm = float(rng.uniform(70.0, 180.0))
    beat = 60.0 / bpm
    root = int(rng.integers(40, 52))
    scale = MAJOR if rng.random() < 0.5 else MINOR
    progression = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    swing = rng.uniform(0.0, 0.08)
    voices = _Voices(sr, rng)
    buf = np.zeros((int(seconds * sr), 2), dtype=np.float32)
    n_beats = int(seconds / beat)
    for b in range(n_beats):
        bar, pos = divmod(b, 4)
        section = (bar // 8) % 4  # 0: no drums (intro/breakdown), else full band
        t0 = int(b * beat * sr)
        degree = progression[bar % len(progression)]
        chord_root = root + scale[degree % 7]
        if pos == 0:
            for i, step in enumerate((0, 2, 4)):
                note = root + 12 + scale[(degree + step) % 7] + 12 * ((degree + step) // 7)
                _add(buf, t0, voices.tone(note, 4 * beat, 0.08, 3.0, 6), 0.10, -0.3 + 0.3 * i)
        _add(buf, t0, voices.tone(chord_root - 12 + 12, beat * 0.9, 0.005, 0.35, 4), 0.30, 0.0)
        for half in range(2):
            if rng.random() < 0.6:
                note = root + 24 + scale[int(rng.integers(7))]
                start = t0 + int((half * 0.5 + (swing if half else 0.0)) * beat * sr)
                _add(buf, start, voices.tone(note, beat * 0.5, 0.003, 0.2, 8), 0.12, 0.4)
        if section == 0:
            continue
        if pos in (0, 2):
            _add(buf, t0, voices.drum("kick", b % 3), 0.8, 0.0)
        if pos in (1, 3):
            _add(buf, t0, voices.drum("snare", b % 4), 0.5, 0.1)
        for half in range(2):
            start = t0 + int((half * 0.5 + (swing if half else 0.0)) * beat * sr)
            _add(buf, start, voices.drum("hat", (b + half) % 5), 0.4, -0.5)
    buf += (1e-3 * rng.standard_normal(buf.shape)).astype(np.float32)  # room noise: no digital silence
    buf *= 0.89 / max(1e-6, float(np.max(np.abs(buf))))
    return buf, bpm
