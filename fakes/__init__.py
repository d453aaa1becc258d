"""Local fakes of the vendors' wire protocols, for end-to-end tests.

Each fake owns a FastAPI ``app``; serve it with :class:`ServedApp` and point
the real SDK / Pipecat service at ``served.http_url`` or ``served.ws_url``.
"""

from fakes.deepgram import DeepgramFake
from fakes.elevenlabs import ElevenLabsFake, tone_pcm
from fakes.harness import ServedApp
from fakes.openai_chat import Delay, ErrorReply, OpenAIFake, ToolCall, count_tokens
from fakes.stripe import StripeFake
from fakes.twilio_caller import HeardSegment, TwilioCaller, pcm_to_ulaw, read_wav_8k, ulaw_to_pcm
from fakes.twilio_rest import LocalTwilioHttpClient, TwilioRestFake

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
