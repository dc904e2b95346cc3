"""eSpeak NG through ``ctypes``: the library and voices of the ``espeakng-loader`` package,
synthesis into memory, and fresh (forked) synthesis for byte-identical results.

eSpeak NG keeps synthesis state in C statics that neither ``espeak_Initialize`` nor a voice
change resets (the pitch-flutter phase, the AGC, the cycle counter), so the same text
synthesised twice in one process differs slightly. :meth:`ESpeak.synthesize` therefore runs
in a child forked from a process whose eSpeak is initialised but has never synthesised.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sslsv.errors import UserError


class SynthError(UserError, RuntimeError):
    """The eSpeak NG library or its data cannot be used, or synthesis failed."""


_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # report errors instead of calling exit()
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4
_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


def espeak_paths() -> tuple[Path, Path]:
    """``(library, espeak-ng-data dir)`` shipped by the ``espeakng-loader`` package."""
    try:
        import espeakng_loader
    except ImportError as e:
        raise SynthError(
            "the Python package 'espeakng-loader' (eSpeak NG library and voices) is not "
            "installed: pip install espeakng-loader"
        ) from e
    lib = Path(espeakng_loader.get_library_path())
    data = Path(espeakng_loader.__file__).parent / "espeak-ng-data"
    return lib, data


class ESpeak:
    """eSpeak NG loaded into this process, in synchronous mode, output collected in memory.

    The library's state is global to the process: make one instance per process (use
    :func:`process_espeak`). :meth:`synthesize` forks by default, so that this process
    never synthesises and every child starts from the same, freshly initialised, state.
    """

    def __init__(
        self,
        library_path: str | os.PathLike | None = None,
        data_path: str | os.PathLike | None = None,
    ) -> None:
        if library_path is None or data_path is None:
            default_lib, default_data = espeak_paths()
            library_path = library_path or default_lib
            data_path = data_path or default_data
        self.library_path = Path(library_path)
        self.data_path = Path(data_path)
        if not self.data_path.is_dir():
            raise SynthError(f"eSpeak NG data directory not found: {self.data_path}")
        try:
            lib = ctypes.CDLL(str(self.library_path))
        except OSError as e:
            raise SynthError(f"cannot load the eSpeak NG library {self.library_path}: {e}") from e
        try:
            self._declare(lib)
        except AttributeError as e:
            raise SynthError(f"{self.library_path} is not a usable eSpeak NG library: {e}") from e
        # buflength 1000 ms: fewer, larger callbacks.
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 1000, str(self.data_path).encode(), _INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise SynthError(
                f"espeak_Initialize failed (returned {rate}) with data directory {self.data_path}"
            )
        self.sample_rate = rate
        self._lib = lib
        self._chunks: list[np.ndarray] = []
        self.used = False  # synthesised in this process: forked children are not fresh

        def collect(wav, num_samples, _events):
            if num_samples > 0 and wav:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
            return 0

        self._callback = _SynthCallback(collect)  # kept alive: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)

    @staticmethod
    def _declare(lib: ctypes.CDLL) -> None:
        """C signatures of the functions used (speak_lib.h, espeak_ng.h)."""
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None

    def variant_exists(self, variant: str) -> bool:
        return (self.data_path / "voices" / "!v" / variant).is_file()

    def _synthesize_here(
        self,
        voice: str,
        sentences: Sequence[str],
        params: dict[str, int],
        min_samples: int,
        rand_seed: int,
    ) -> np.ndarray:
        lib = self._lib
        status = lib.espeak_SetVoiceByName(voice.encode())
        if status != 0:
            raise SynthError(f"eSpeak NG has no voice {voice!r} (error {status})")
        for name, key in (
            ("rate", _PARAM_RATE),
            ("volume", _PARAM_VOLUME),
            ("pitch", _PARAM_PITCH),
            ("range", _PARAM_RANGE),
        ):
            if name in params:
                lib.espeak_SetParameter(key, int(params[name]), 0)
        lib.espeak_ng_SetRandSeed(rand_seed)
        self._chunks = []
        total = 0
        for sentence in sentences:
            text = sentence.encode("utf-8")
            status = lib.espeak_Synth(
                text, len(text) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
            if status != 0:
                raise SynthError(f"espeak_Synth failed (error {status}) on {sentence!r}")
            total = sum(len(c) for c in self._chunks)
            if total >= min_samples:
                break
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)

    def synthesize(
        self,
        voice: str,
        sentences: Sequence[str],
        params: dict[str, int],
        min_samples: int = 0,
        rand_seed: int = 0,
        fresh: bool = True,
    ) -> np.ndarray:
        """Speak ``sentences`` in turn until at least ``min_samples`` samples (all if 0).

        ``voice`` is ``language+variant``; ``params`` may hold eSpeak ``rate`` (wpm),
        ``pitch``, ``range`` (0-100) and ``volume``. Returns int16 samples at
        :attr:`sample_rate`. With ``fresh`` (default) it runs in a forked child, from a
        never-used synthesiser: identical arguments give identical samples. Without, it runs
        here (faster), and the result also depends on what this process synthesised before.
        """
        if min_samples <= 0:
            min_samples = sys.maxsize
        if not fresh:
            self.used = True
            return self._synthesize_here(voice, sentences, params, min_samples, rand_seed)
        if self.used:
            raise SynthError("fresh synthesis asked of a process that synthesised in-process")
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: never returns into the caller's code
            code = 0
            try:
                os.close(read_fd)
                try:
                    audio = self._synthesize_here(voice, sentences, params, min_samples, rand_seed)
                    payload = b"\0" + audio.astype("<i2").tobytes()
                except BaseException as e:  # reported to the parent
                    payload = b"\1" + f"{type(e).__name__}: {e}".encode()
                view = memoryview(payload)
                while view:
                    view = view[os.write(write_fd, view) :]
                os.close(write_fd)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(write_fd)
        parts = []
        with open(read_fd, "rb", closefd=True) as pipe:
            while chunk := pipe.read(1 << 20):
                parts.append(chunk)
        _, status = os.waitpid(pid, 0)
        payload = b"".join(parts)
        if os.waitstatus_to_exitcode(status) != 0 or not payload:
            raise SynthError(f"eSpeak NG child process failed (wait status {status}) on {voice!r}")
        if payload[:1] != b"\0":
            raise SynthError(payload[1:].decode(errors="replace"))
        return np.frombuffer(payload[1:], dtype="<i2").astype(np.int16)


_PROCESS_ESPEAK: ESpeak | None = None


def process_espeak() -> ESpeak:
    """This process's :class:`ESpeak` with the default library and data (loaded once: the
    library's state is global to the process)."""
    global _PROCESS_ESPEAK
    if _PROCESS_ESPEAK is None:
        _PROCESS_ESPEAK = ESpeak()
    return _PROCESS_ESPEAK
