"""Operations: health for load balancers and Docker, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from agent.accounts.auth import admin_token_valid
from api.deps import AdminCredentials, Lifecycle
from api.schemas import ErrorOut
from api.strict_json import StrictJSONRoute
from api.views.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from api.views.metrics import render_metrics


class HealthOut(BaseModel):
    status: str


router = APIRouter(route_class=StrictJSONRoute, tags=["ops"])


@router.get("/metrics", response_class=Response, summary="Prometheus metrics",
             responses={200: {"content": {METRICS_CONTENT_TYPE: {"schema": {"type": "string"}}},
                              "description": "Prometheus text format"},
                        401: {"model": ErrorOut, "description": "METRICS_TOKEN (or, once public, ADMIN_TOKEN) needed"}})
async def metrics(lifecycle: Lifecycle, creds: AdminCredentials) -> Response:
    """Open on a local server; with METRICS_TOKEN set (or once PUBLIC_BASE_URL is), a bearer token is needed."""
    settings = lifecycle.rt.settings
    wanted = [t for t in (settings.metrics_token, settings.admin_token if settings.public_base_url else "") if t]
    if wanted and not (creds and any(admin_token_valid(creds.credentials, t) for t in wanted)):
        raise HTTPException(401, "metrics need a bearer token (METRICS_TOKEN or ADMIN_TOKEN)",
                            headers={"WWW-Authenticate": "Bearer"})
    return Response(await render_metrics(lifecycle), media_type=METRICS_CONTENT_TYPE)


@router.get("/healthz", response_model=HealthOut,
            responses={503: {"model": HealthOut, "description": "The database is unreachable"}})
async def healthz(request: Request) -> JSONResponse:
    ok = await request.app.state.runtime.db.ping()
    return JSONResponse({"status": "ok" if ok else "database unreachable"}, status_code=200 if ok else 503)
