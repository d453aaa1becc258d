"""Local fakes of the vendors' wire protocols, for end-to-end tests.

Each fake owns a FastAPI ``app``; serve it with :class:`ServedApp` and point
the real SDK / Pipecat service at ``served.http_url`` or ``served.ws_url``.
"""

from tests.fakes.deepgram import DeepgramFake
from tests.fakes.elevenlabs import ElevenLabsFake, tone_pcm
from tests.fakes.harness import ServedApp
from tests.fakes.openai_chat import Delay, ErrorReply, OpenAIFake, ToolCall, count_tokens
from tests.fakes.stripe import StripeFake
from tests.fakes.twilio_caller import HeardSegment, TwilioCaller, pcm_to_ulaw, read_wav_8k, ulaw_to_pcm
from tests.fakes.twilio_rest import LocalTwilioHttpClient, TwilioRestFake

__all__ = [
    "ServedApp",
    "OpenAIFake",
    "ErrorReply",
    "Delay",
    "ToolCall",
    "count_tokens",
    "DeepgramFake",
    "ElevenLabsFake",
    "tone_pcm",
    "TwilioRestFake",
    "LocalTwilioHttpClient",
    "TwilioCaller",
    "HeardSegment",
    "read_wav_8k",
    "pcm_to_ulaw",
    "ulaw_to_pcm",
    "StripeFake",
]
