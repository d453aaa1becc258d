"""Operations: health for load balancers and Docker, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from api.deps import Lifecycle
from api.views.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from api.views.metrics import render_metrics


class HealthOut(BaseModel):
    status: str


router = APIRouter(tags=["ops"])


@router.get("/metrics", response_class=Response, summary="Prometheus metrics",
             responses={200: {"content": {METRICS_CONTENT_TYPE: {"schema": {"type": "string"}}},
                              "description": "Prometheus text format"}})
async def metrics(lifecycle: Lifecycle) -> Response:
    return Response(await render_metrics(lifecycle), media_type=METRICS_CONTENT_TYPE)


@router.get("/healthz", response_model=HealthOut,
            responses={503: {"model": HealthOut, "description": "The database is unreachable"}})
async def healthz(request: Request) -> JSONResponse:
    ok = await request.app.state.runtime.db.ping()
    return JSONResponse({"status": "ok" if ok else "database unreachable"}, status_code=200 if ok else 503)
