"""The entry: settings, the app factory, its lifespan, and `main`.

Thin on purpose. The routes live in `api/`, one router per surface (Twilio,
the user API, the operator API, the test room, operations); this module only
wires them to one process's runtime. Run it with `make run` (or
`python server.py`); docs/api.md describes the API.
"""

from __future__ import annotations

import asyncio
import sys
from contextlib import asynccontextmanager, suppress
from typing import AsyncIterator

import uvicorn
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from loguru import logger

from agent.calls.lifecycle import CallLifecycle
from agent.calls.ownership import OwnershipKeeper
from agent.calls.reconcile import Reconciler
from agent.calls.telephony import Twilio
from agent.runtime import Runtime
from agent.settings import Settings, load_settings
from api import admin, ops, room, twilio, user
from api.docs_ui import serve_docs
from api.errors import install_error_handlers
from api.guards import RequestGuards
from api.logs import redact_tokens_in_server_logs
from api.openapi import API_DESCRIPTION, refined_openapi
from pipeline import models
from pipeline.local_engines import check_local_engines, prepare_local_engines
from pipeline.webrtc import WebRTCRoom


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await Runtime.start(settings)
        await asyncio.to_thread(models.preload)  # VAD and smart-turn, once per process, off the loop
        app.state.runtime = runtime
        app.state.lifecycle = CallLifecycle(runtime)
        app.state.twilio = Twilio(settings)
        app.state.room = WebRTCRoom(app.state.lifecycle, settings)
        loops = [asyncio.create_task(Reconciler(app.state.lifecycle).run_forever(settings.reconcile_interval_secs)),
                 asyncio.create_task(OwnershipKeeper(app.state.lifecycle).run_forever())]
        try:
            yield
        finally:
            for loop in loops:
                loop.cancel()
                with suppress(asyncio.CancelledError):
                    await loop
            await app.state.room.close()
            await app.state.lifecycle.end_all("server_shutdown")
            await runtime.close()

    app = FastAPI(title="Call Me Back", version="0.1.0", lifespan=lifespan, description=API_DESCRIPTION,
                  docs_url=None, redoc_url=None)
    serve_docs(app)  # Swagger UI from a package, not a CDN
    install_error_handlers(app)
    redact_tokens_in_server_logs()
    app.openapi = refined_openapi(app, settings)  # type: ignore[method-assign]
    for surface in (user, admin, ops, room, twilio):
        app.include_router(surface.router)
    app.add_middleware(RequestGuards, settings=settings)
    app.mount("/room/static", StaticFiles(directory=room.WEB_DIR), name="room-static")
    return app


def main() -> None:
    try:
        settings = load_settings()
    except Exception as exc:  # a configuration error: say which setting and why, then stop
        print(f"Configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    _log_to_stderr(settings)
    try:  # a broken install of the local engines fails here, with what to install, not on the first call
        in_use = check_local_engines(settings)
    except Exception as exc:
        print(f"Local engines could not be prepared: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logger.info(f"engines: {in_use}")
    if "ADMIN_TOKEN" in settings.share_generated_secrets():  # the room asks for it when not reached locally
        logger.warning(f"ADMIN_TOKEN is not set; this run's operator token is {settings.admin_token}")
    if settings.workers == 1:
        uvicorn.run(create_worker_app(settings), host=settings.host, port=settings.port, log_level="info")
    else:  # each process builds its own app, runtime and models from the same environment
        uvicorn.run("server:create_worker_app", factory=True, workers=settings.workers, host=settings.host,
                    port=settings.port, log_level="info")


def create_worker_app(settings: Settings | None = None) -> FastAPI:
    """A serving process's app: the local engines' models loaded before the first call, not during it."""
    if settings is None:  # a worker process of WORKERS > 1: started by uvicorn, configured here
        settings = load_settings()
        _log_to_stderr(settings)
    prepare_local_engines(settings)
    return create_app(settings)


def _log_to_stderr(settings: Settings) -> None:
    logger.remove()
    logger.add(sys.stderr, level=settings.log_level)


if __name__ == "__main__":
    main()
