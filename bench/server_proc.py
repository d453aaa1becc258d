"""A server under test, in its own process: ours (`server.create_app`) or the bare baseline.

Run by `bench.call_bench`, never by hand. Its own process, so that its CPU
time and memory can be read from /proc without the fakes' or the callers'.
Both kinds are wrapped by the same `LatenessProbe` and configured alike
(loguru at INFO to stderr, as `make run` does; uvicorn quiet). In ours, the
UsageMeter and BudgetGuard count the frames they see (one dict update per
frame), so the bench knows how many frames a call-second pushes through them.
Prints one JSON line (`port`, `pid`), then serves until terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import uvicorn
from loguru import logger

from agent.settings import Settings
from bench.fakes_proc import ACCOUNT_SID, API_KEY, AUTH_TOKEN
from bench.probe import SAMPLES, LatenessProbe, sample_loop_lag


def bench_settings(fakes: dict[str, str], data_dir: Path, port: int, database_url: str = "") -> Settings:
    """Settings pointing every vendor at the fakes; production defaults otherwise."""
    return Settings(
        _env_file=None, data_dir=data_dir, database_url=database_url or f"sqlite:///{data_dir / 'bench.db'}",
        public_base_url=f"http://127.0.0.1:{port}", jwt_secret="j" * 40, admin_token="a" * 30,
        twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN, twilio_api_base_url=fakes["twilio"],
        deepgram_api_key=API_KEY, deepgram_base_url=fakes["deepgram"],
        cerebras_api_key=API_KEY, cerebras_base_url=fakes["cerebras"],
        openai_api_key=API_KEY, openai_base_url=fakes["openai"],
        elevenlabs_api_key=API_KEY, elevenlabs_base_url=fakes["elevenlabs"],
        log_level="INFO",
    )


def caller_phone(index: int) -> str:
    return f"+1555777{index:04d}"


async def add_callers(settings: Settings, count: int) -> None:
    """One user per simulated caller, as on a real line (budgets are per user)."""
    from agent.runtime import Runtime

    runtime = await Runtime.start(settings)
    try:
        for i in range(count):
            await runtime.users.create_user(f"bench-{i:04d}", display_name=f"Caller {i}",
                                            phone_number=caller_phone(i), time_zone="UTC")
    finally:
        await runtime.close()


def count_frames_through_our_processors() -> None:
    """Count frames by type at each of our processors (for the CPU-share estimate)."""
    from processors.budget_guard import BudgetGuard
    from processors.metering import UsageMeter

    classes: list[type] = [UsageMeter, BudgetGuard]
    try:  # the spend gates (one hop each before the LLM and the TTS), where this version has them
        from processors.spend_gate import LLMSpendGate, TTSSpendGate

        classes += [LLMSpendGate, TTSSpendGate]
    except ImportError:
        pass
    for cls in classes:
        original = cls.process_frame
        prefix = cls.__name__ + ":"

        async def counted(self: Any, frame: Any, direction: Any, _original: Any = original,
                          _prefix: str = prefix) -> None:
            key = _prefix + type(frame).__name__
            SAMPLES.counters[key] = SAMPLES.counters.get(key, 0) + 1
            await _original(self, frame, direction)

        cls.process_frame = counted  # type: ignore[method-assign]


def build_app(mode: str, settings: Settings, callers: int) -> Any:
    if mode == "ours":
        from server import create_app

        if callers:
            asyncio.run(add_callers(settings, callers))
        count_frames_through_our_processors()
        return create_app(settings)
    from bench.bare import create_bare_app

    return create_bare_app(settings)


async def serve(app: Any, sock: socket.socket) -> None:
    """Serve, and say so on stdout only once the app has started and the socket listens."""
    config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=3)
    server = uvicorn.Server(config)

    async def announce() -> None:
        while not server.started:
            await asyncio.sleep(0.02)
        print(json.dumps({"port": sock.getsockname()[1], "pid": os.getpid()}), flush=True)
        await sample_loop_lag()

    side = asyncio.get_running_loop().create_task(announce())
    try:
        await server.serve(sockets=[sock])
    finally:
        side.cancel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["ours", "bare"], required=True)
    parser.add_argument("--fakes", required=True, help="JSON of the fakes' base URLs")
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--callers", type=int, default=200, help="users to create (0: another worker did)")
    parser.add_argument("--database-url", default="", help="a database shared with other workers")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="INFO")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings = bench_settings(json.loads(args.fakes), args.dir, port, args.database_url)
    app = LatenessProbe(build_app(args.mode, settings, args.callers))
    asyncio.run(serve(app, sock))


if __name__ == "__main__":
    main()
