"""Speech synthesis with libespeak-ng through ctypes, for training speech at known times.

The library and its voice data ship in the `espeakng-loader` wheel, so no system package is needed. espeak-ng keeps
one global engine per process: every call here holds `_LOCK`, loads the library, sets voice, rate and pitch,
synthesises in AUDIO_OUTPUT_SYNCHRONOUS mode (espeak_Synth returns only when all audio went through our callback) and
unloads it again, so the same arguments always give the same samples (see `_synth_fresh`).

Output is float32 mono at 16 kHz (what Whisper and `damo_cli.media.load_audio` use), resampled from espeak's native
rate (22,050 Hz) with a windowed-sinc filter written here, so the result does not depend on an optional resampler.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from damo_cli.data.errors import DataError

TARGET_RATE = 16_000

# speak_lib.h (API revision 12): espeak_AUDIO_OUTPUT, option bits, espeak_PARAMETER, flags, espeak_ERROR
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # without it a missing data folder makes the library call exit() on our process
_BUFLENGTH_MS = 200
_PARAM_RATE = 1
_PARAM_VOLUME = 2
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_EE_OK = 0
_EE_NOT_FOUND = 2

RATE_MIN, RATE_MAX = 80, 450  # words per minute (espeakRATE_MINIMUM / _MAXIMUM)

# English voices that load and speak with the wheel's data (all 104 variants in voices/!v work with each of them;
# `working_voices()` re-checks on a machine). A voice is a language voice optionally followed by "+variant".
# espeak-ng names British English plain "en"; "en-gb" is accepted here as an alias for it.
BASE_VOICES = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "croak")
_ALIASES = {"en-gb": "en"}


class _Event(ctypes.Structure):
    """espeak_EVENT; only its layout matters here (the callback receives a pointer to an array of them)."""

    class _Id(ctypes.Union):
        _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _Id),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Speech:
    """One synthesised utterance: float32 mono samples in [-1, 1] at `sample_rate`."""

    samples: np.ndarray
    sample_rate: int
    text: str
    voice: str
    rate: int
    pitch: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


def _espeak_paths() -> tuple[Path, Path]:
    try:
        import espeakng_loader
    except ImportError as err:
        raise DataError("speech synthesis needs the 'espeakng-loader' package (pip install espeakng-loader)") from err
    return Path(espeakng_loader.get_library_path()), Path(espeakng_loader.get_data_path())


def _bind(lib: ctypes.CDLL) -> None:
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p,  # text
        ctypes.c_size_t,  # size in bytes (unused in synchronous mode, still passed honestly)
        ctypes.c_uint,  # position
        ctypes.c_int,  # position_type
        ctypes.c_uint,  # end_position (0 = to the end)
        ctypes.c_uint,  # flags
        ctypes.POINTER(ctypes.c_uint),  # unique_identifier (may be NULL)
        ctypes.c_void_p,  # user_data
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.argtypes = []
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_Terminate.argtypes = []
    lib.espeak_Terminate.restype = ctypes.c_int


def _synth_fresh(text: str, voice: str, rate: int, pitch: int) -> tuple[np.ndarray, int]:
    """Synthesise with a freshly loaded engine: (int16 samples, native sample rate).

    espeak-ng keeps waveform state (phase, pitch flutter, sample counters) in C statics that espeak_Terminate and
    espeak_Initialize do not reset, so the same text comes out a few samples different depending on what was said
    before, and it seeds its noise generator from the clock. Loading the library, seeding its generator (and libc's
    rand(), which it also imports), speaking once and unloading it (dlclose) gives every call the same starting
    state: bit-identical audio, hence identical labels from a seed. It costs ~10 ms per utterance. (If another module
    keeps the same libespeak-ng loaded, the unload is a no-op and repeatability is lost, not correctness.)
    """
    import _ctypes  # dlclose lives here on POSIX

    lib_path, data_path = _espeak_paths()
    try:
        lib = ctypes.CDLL(str(lib_path))
    except OSError as err:
        raise DataError(f"cannot load libespeak-ng from {lib_path}: {err}") from err
    chunks: list[np.ndarray] = []

    def collect(wav: ctypes._Pointer, count: int, _events: ctypes._Pointer) -> int:
        # wav is NULL once synthesis is complete; count may be 0 mid-stream (which is not the end)
        if wav and count > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0  # 0 = continue synthesis

    callback = _SynthCallback(collect)  # referenced until after dlclose: C must never call a freed thunk
    try:
        _bind(lib)
        _seed_libc_rand()
        # `path` is the folder that *contains* espeak-ng-data (speak_lib.h)
        native = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, _BUFLENGTH_MS, str(data_path.parent).encode(), _INITIALIZE_DONT_EXIT
        )
        if native <= 0:
            raise DataError(f"libespeak-ng failed to initialise with data at {data_path}")
        try:
            # espeak-ng seeds its own generator (breath noise of variants such as f2/f3/f5) from the clock when it
            # initialises; a fixed seed after initialisation makes it repeatable
            set_seed = getattr(lib, "espeak_ng_SetRandSeed", None)
            if set_seed is not None:
                set_seed.argtypes = [ctypes.c_long]
                set_seed.restype = None
                set_seed(_RAND_SEED)
            lib.espeak_SetSynthCallback(callback)
            if lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise DataError(f"espeak-ng has no voice {voice!r} (working ones: {', '.join(BASE_VOICES)})")
            for param, value in ((_PARAM_RATE, rate), (_PARAM_PITCH, pitch), (_PARAM_VOLUME, 100), (_PARAM_RANGE, 50)):
                if lib.espeak_SetParameter(param, int(value), 0) != _EE_OK:
                    raise DataError(f"espeak-ng rejected parameter {param}={value}")
            encoded = text.encode("utf-8") + b"\0"
            buffer = ctypes.create_string_buffer(encoded, len(encoded))
            status = lib.espeak_Synth(buffer, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            lib.espeak_Synchronize()
            if status != _EE_OK:
                raise DataError(f"espeak-ng failed to synthesise {text!r} (status {status})")
        finally:
            lib.espeak_Terminate()
    finally:
        # POSIX dlclose / Windows FreeLibrary: drop our reference so the next load starts from fresh statics
        unload = getattr(_ctypes, "dlclose", None) or getattr(_ctypes, "FreeLibrary", None)
        if unload is not None:
            unload(lib._handle)
        del callback
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    return samples, int(native)


_LOCK = threading.Lock()
_RAND_SEED = 20250611  # any constant: what matters is that every utterance starts from the same one


def _seed_libc_rand() -> None:
    """Some variants add breath noise from libc's process-wide rand(), which other libraries in the process
    (the video decoders) also draw from; re-seeding it before each utterance keeps the samples repeatable."""
    try:
        libc = ctypes.CDLL(None)
        libc.srand.argtypes = [ctypes.c_uint]
        libc.srand.restype = None
        libc.srand(_RAND_SEED)
    except (OSError, AttributeError, TypeError):  # no libc to reach (Windows): speech works, maybe not bit-identical
        pass


def _check_voice(voice: str) -> None:
    """espeak-ng silently ignores an unknown "+variant"; refuse it instead, so a typo cannot change the voice split."""
    base, _, variant = voice.partition("+")
    if not base or base.startswith("-"):
        raise DataError(f"bad voice name {voice!r}")
    if variant:
        _, data_path = _espeak_paths()
        if not (data_path / "voices" / "!v" / variant).is_file():
            raise DataError(f"espeak-ng has no voice variant {variant!r} (e.g. m1-m7, f1-f5, klatt, croak)")


def resample(samples: np.ndarray, rate_in: int, rate_out: int, zero_crossings: int = 16) -> np.ndarray:
    """Band-limited resampling by direct windowed-sinc interpolation (Hann window, cutoff 0.95 x the lower Nyquist).

    Each output sample is a weighted sum of the inputs within `zero_crossings` lobes of the sinc on each side, so
    the cost is linear in length and no optional resampling library is needed.
    """
    x = np.asarray(samples, dtype=np.float64)
    if rate_in == rate_out or len(x) == 0:
        return x.astype(np.float32)
    n_out = int(round(len(x) * rate_out / rate_in))
    cutoff = 0.95 * min(1.0, rate_out / rate_in)  # cycles per input sample x 2; below the output Nyquist
    half_width = zero_crossings / cutoff  # in input samples
    taps = int(np.ceil(half_width))
    positions = np.arange(n_out) * (rate_in / rate_out)  # output sample times in input-sample units
    idx = np.floor(positions).astype(np.int64)[:, None] + np.arange(-taps + 1, taps + 1)[None, :]
    dist = positions[:, None] - idx
    window = np.where(np.abs(dist) < half_width, 0.5 + 0.5 * np.cos(np.pi * dist / half_width), 0.0)
    kernel = cutoff * np.sinc(cutoff * dist) * window
    valid = (idx >= 0) & (idx < len(x))
    kernel = np.where(valid, kernel, 0.0)
    out = (x[np.clip(idx, 0, len(x) - 1)] * kernel).sum(axis=1)
    # Normalise by the kernel sum so a constant signal passes unchanged, even where the kernel is cut at the edges
    weight = kernel.sum(axis=1)
    out /= np.where(np.abs(weight) > 1e-9, weight, 1.0)
    return out.astype(np.float32)


def trim_silence(samples: np.ndarray, sample_rate: int, threshold: float = 0.01, pad_s: float = 0.02) -> np.ndarray:
    """Cut leading/trailing near-silence (espeak adds ~0.1-0.3 s) so an utterance's extent is its audible part."""
    loud = np.flatnonzero(np.abs(samples) > threshold)
    if len(loud) == 0:
        return samples[:0]
    pad = int(pad_s * sample_rate)
    return samples[max(0, loud[0] - pad) : min(len(samples), loud[-1] + pad + 1)]


def synthesize(
    text: str,
    voice: str = "en-us",
    rate: int = 165,
    pitch: int = 50,
    *,
    sample_rate: int = TARGET_RATE,
    trim: bool = True,
) -> tuple[np.ndarray, int]:
    """Speak `text` with an espeak-ng voice; returns (float32 mono samples in [-1, 1], sample_rate).

    voice: an espeak-ng voice name, optionally with a variant ("en-us", "en-gb-scotland", "en-us+f3").
    rate: words per minute (80-450); pitch: 0-100 (50 = the voice's normal). The same arguments give the same
    samples, whatever was synthesised before. `trim` removes the engine's leading/trailing silence.
    """
    speech = synthesize_speech(text, voice, rate, pitch, sample_rate=sample_rate, trim=trim)
    return speech.samples, speech.sample_rate


def synthesize_speech(
    text: str,
    voice: str = "en-us",
    rate: int = 165,
    pitch: int = 50,
    *,
    sample_rate: int = TARGET_RATE,
    trim: bool = True,
) -> Speech:
    """`synthesize`, returning a `Speech` record that keeps the settings used."""
    if not text.strip():
        raise DataError("cannot synthesise empty text")
    if not RATE_MIN <= rate <= RATE_MAX:
        raise DataError(f"speech rate must be {RATE_MIN}-{RATE_MAX} words per minute, got {rate}")
    if not 0 <= pitch <= 100:
        raise DataError(f"speech pitch must be 0-100, got {pitch}")
    _check_voice(voice)
    base, plus, variant = voice.partition("+")
    engine_voice = _ALIASES.get(base.lower(), base) + plus + variant
    with _LOCK:  # one engine per process: calls must not interleave
        raw, native = _synth_fresh(text, engine_voice, rate, pitch)
    samples = raw.astype(np.float32) / 32768.0
    samples = resample(samples, native, sample_rate)
    samples = np.clip(samples, -1.0, 1.0)
    if trim:
        samples = trim_silence(samples, sample_rate)
    if len(samples) == 0:
        raise DataError(f"espeak-ng produced no audible speech for {text!r} with voice {voice!r}")
    return Speech(samples=samples, sample_rate=sample_rate, text=text, voice=voice, rate=rate, pitch=pitch)


def working_voices(candidates: tuple[str, ...] | None = None) -> list[str]:
    """The voices (base voices and every base+variant pair by default) that load and produce speech here."""
    if candidates is None:
        candidates = BASE_VOICES + tuple(f"{b}+{v}" for b in BASE_VOICES for v in VARIANTS)
    ok: list[str] = []
    for voice in candidates:
        try:
            synthesize("testing one two", voice=voice)
        except DataError:
            continue
        ok.append(voice)
    return ok
