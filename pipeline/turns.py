"""Turns that end when the caller is done: smart-turn, with the transcript as a second opinion.

Smart-turn judges from the audio alone whether an utterance is finished, and
when it says "incomplete" Pipecat waits for its silence timeout (3 s) before
answering. On phone audio it often says so of finished sentences ("I'm feeling
great today."), so the caller waits three seconds for every such reply.

The STT's final transcript knows more: a sentence the STT punctuated as ended,
of a few words, that does not end on a word that promises more ("and", "but",
"because" …), is finished. When smart-turn said incomplete but the final
transcript is such a sentence, the turn ends now. Everything else (trailing
"so…", a lone "well", a long pause mid-thought) still gets smart-turn's wait.
"""

from __future__ import annotations

import re

from pipecat.frames.frames import TranscriptionFrame, VADUserStoppedSpeakingFrame
from pipecat.turns.user_stop import TurnAnalyzerUserTurnStopStrategy

MIN_WORDS = 3
_ENDED = re.compile(r"(?<!\.\.)[.!?][\"')\]]*\s*$")  # an ellipsis trails off: not an end
_MORE_TO_COME = re.compile(r"\b(and|but|or|so|because|cause|if|then|that|which|who|when|with|to|of|for|the|a|"
                           r"an|my|your|like|um|uh|er|well)\W*$", re.IGNORECASE)


def sounds_finished(text: str) -> bool:
    """Whether a final transcript reads as a finished sentence (a turn the caller is done with)."""
    text = text.strip()
    return (len(text.split()) >= MIN_WORDS and bool(_ENDED.search(text)) and not text.endswith(("…", "..."))
            and not _MORE_TO_COME.search(text.rstrip(".!?\"')] ")))


class TranscriptAwareTurnStop(TurnAnalyzerUserTurnStopStrategy):
    """Pipecat's smart-turn stop strategy, overruled by a final transcript that sounds finished."""

    async def _handle_vad_user_stopped_speaking(self, frame: VADUserStoppedSpeakingFrame) -> None:
        await super()._handle_vad_user_stopped_speaking(frame)
        await self._overrule_if_finished()

    async def _handle_transcription(self, frame: TranscriptionFrame) -> None:
        await super()._handle_transcription(frame)
        await self._overrule_if_finished()

    async def _overrule_if_finished(self) -> None:
        if self._turn_complete or self._vad_user_speaking or not self._vad_stopped:
            return  # already ending, or the caller is still talking
        if sounds_finished(self._text):
            self._turn_complete = True
            self._transcript_finalized = True  # the transcript is what decided: no further wait for one
            await self._maybe_trigger_user_turn_stopped()
