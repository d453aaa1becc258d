"""Silero VAD and smart-turn loaded once per process, with each call's state kept per call.

Pipecat's `SileroVADAnalyzer()` and `LocalSmartTurnAnalyzerV3()` each build an
ONNX inference session when constructed: about 19 ms and 27 ms of the event
loop and 10 MB each on this machine kind, for every call, while every live
call's audio waits. An `onnxruntime.InferenceSession` is safe to run from
several threads at once and keeps no state between runs, so one session per
model serves every call of the process:

- VAD: Silero is recurrent, but its state (`_state`, `_context`) lives in
  Pipecat's `SileroOnnxModel` wrapper, not in the session; each call gets its
  own wrapper around the shared session.
- Smart-turn: stateless per inference. Pipecat already runs it off the event
  loop, on a one-thread executor per call (a thread per live call); here the
  calls share one pool sized to the cores, so a turn end never stalls audio
  and inference never oversubscribes the machine.

The subclasses only replace how the model is obtained; the analysis is
Pipecat's own. `preload()` builds both at start-up, off the event loop.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

import onnxruntime
from pipecat.audio.turn.smart_turn.base_smart_turn import BaseSmartTurn
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.vad.silero import SileroOnnxModel, SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams
from pipecat.processors.aggregators.llm_response_universal import LLMUserAggregatorParams
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.utils.env import env_truthy

from pipeline.turns import TranscriptAwareTurnStop

_lock = threading.Lock()
_sessions: dict[str, onnxruntime.InferenceSession] = {}
_turn_pool: ThreadPoolExecutor | None = None


def _session(package: str, name: str, options: onnxruntime.SessionOptions) -> onnxruntime.InferenceSession:
    with _lock:
        if name not in _sessions:
            path = str(resources.files(package).joinpath(name))
            _sessions[name] = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"],
                                                           sess_options=options)
        return _sessions[name]


def silero_session() -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = options.intra_op_num_threads = 1  # as Pipecat's: one 32 ms window is tiny
    return _session("pipecat.audio.vad.data", "silero_vad.onnx", options)


def smart_turn_session() -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = options.intra_op_num_threads = 1  # parallelism comes from the pool
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return _session("pipecat.audio.turn.smart_turn.data", "smart-turn-v3.2-cpu.onnx", options)


def turn_pool() -> ThreadPoolExecutor:
    """The process's smart-turn threads: one per core, shared by every call."""
    global _turn_pool
    with _lock:
        if _turn_pool is None:
            _turn_pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="smart-turn")
        return _turn_pool


def preload() -> None:
    """Build both sessions now (blocking, about 50 ms): run it in a thread at start-up."""
    silero_session()
    smart_turn_session()
    turn_pool()


class _CallVADState(SileroOnnxModel):
    """Pipecat's Silero wrapper (the call's recurrent state) around the process's session."""

    def __init__(self, session: onnxruntime.InferenceSession) -> None:  # noqa: D107 - no file to load
        self.session = session
        self.reset_states()
        self.sample_rates = [8000, 16000]


class SharedSileroVADAnalyzer(SileroVADAnalyzer):
    """`SileroVADAnalyzer` whose model state is the call's and whose session is the process's."""

    def __init__(self, *, sample_rate: int | None = None, params: VADParams | None = None) -> None:
        VADAnalyzer.__init__(self, sample_rate=sample_rate, params=params)  # skips loading a session
        self._model = _CallVADState(silero_session())
        self._windows_since_reset = 0
        self._low_confidence_windows = 0


class SharedSmartTurnAnalyzer(LocalSmartTurnAnalyzerV3):
    """`LocalSmartTurnAnalyzerV3` on the process's session and thread pool."""

    def __init__(self, **kwargs: object) -> None:
        BaseSmartTurn.__init__(self, **kwargs)  # skips loading a session of its own
        self._log_data = env_truthy("PIPECAT_SMART_TURN_LOG_DATA", default=False)
        self._session = smart_turn_session()

    @property
    def _model_executor(self) -> ThreadPoolExecutor:
        return turn_pool()


def user_turn_params(**overrides: object) -> LLMUserAggregatorParams:
    """The user aggregator's parameters: Pipecat's default turn strategies on the shared models, with
    smart-turn's "incomplete" overruled by a final transcript that sounds finished (pipeline/turns.py)."""
    stop = [TranscriptAwareTurnStop(turn_analyzer=SharedSmartTurnAnalyzer())]
    return LLMUserAggregatorParams(vad_analyzer=SharedSileroVADAnalyzer(),
                                   user_turn_strategies=UserTurnStrategies(stop=stop), **overrides)
