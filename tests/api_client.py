"""The API in-process: the real app (lifespan and all) behind httpx's ASGI transport, with real tokens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from agent.accounts.auth import mint_user_token
from agent.calls.lifecycle import CallLifecycle
from agent.runtime import Runtime
from agent.settings import Settings
from server import create_app


@dataclass
class Api:
    app: Any
    client: httpx.AsyncClient
    settings: Settings

    @property
    def rt(self) -> Runtime:
        return self.app.state.runtime

    @property
    def lifecycle(self) -> CallLifecycle:
        return self.app.state.lifecycle

    def user(self, user_id: str = "demo") -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_user_token(user_id, self.settings.jwt_secret)}"}

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.admin_token}"}

    async def add_user(self, user_id: str, phone: str | None = None) -> dict[str, str]:
        """A second user (through the operator API), and their auth header."""
        response = await self.client.post("/api/admin/users", headers=self.admin, json={
            "id": user_id, "display_name": user_id.title(), "phone_number": phone, "time_zone": "UTC"})
        assert response.status_code == 201, response.text
        return self.user(user_id)


@pytest.fixture
async def api(settings: Settings):
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            yield Api(app, client, settings)
