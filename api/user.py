"""The user API under /api: a user's personas, memories, budget, estimates, calls and their costs.

Every route depends on `User` (a bearer JWT) and sees only that user's data.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from fastapi.sse import EventSourceResponse, ServerSentEvent

from agent.calls.outbound import place_outbound_call
from agent.memory.relationships import Fact, FactCategory
from api.deps import Lifecycle, OwnCall, PersonaRow, Rt, TwilioClient, User, persona_named
from api.errors import PaymentRequiredOut, errors
from api.schemas import (
    FACT_KEY_PATTERN,
    BudgetIn,
    BudgetOut,
    CallCostOut,
    CallOut,
    CallPage,
    CallRequest,
    CostEventsOut,
    CostSummaryOut,
    EstimateIn,
    EstimateOut,
    FactIn,
    MemoriesOut,
    PaymentsOut,
    PersonaOut,
    PromptPreviewOut,
    RelationshipIn,
    RelationshipOut,
    UserOut,
)
from api.strict_json import StrictJSONRoute
from api.views import accounts
from api.views.budget import change_budget, read_budget
from api.views.call_costs import call_cost, call_cost_events, cost_updates
from api.views.cost_summary import cost_summary
from api.views.memory import forget_fact, memory_view, relationship_out, update_relationship
from api.views.precall import estimate_next_call, prompt_preview

router = APIRouter(route_class=StrictJSONRoute, prefix="/api", responses=errors(401))


@router.get("/user", tags=["user"], summary="Who the token belongs to")
async def get_me(user: User) -> UserOut:
    return UserOut.from_row(user)


@router.get("/personas", tags=["personas"], summary="Every persona you can talk to")
async def list_personas(rt: Rt, user: User) -> list[PersonaOut]:
    return [PersonaOut.from_row(p) for p in await rt.users.list_personas()]


@router.get("/personas/{persona_id}", tags=["personas"], responses=errors(404))
async def get_persona(persona: PersonaRow) -> PersonaOut:
    return PersonaOut.from_row(persona)


@router.get("/personas/{persona_id}/relationship", tags=["memory"], responses=errors(404),
              summary="Your relationship with the persona (a friend until you say otherwise)")
async def get_relationship(rt: Rt, user: User, persona: PersonaRow) -> RelationshipOut:
    return relationship_out(await rt.memory.get_relationship(user["id"], persona["id"]))


@router.put("/personas/{persona_id}/relationship", tags=["memory"], responses=errors(400, 404),
              summary="Change the relationship type, your custom prompt or memory preferences")
async def put_relationship(rt: Rt, user: User, persona: PersonaRow, body: RelationshipIn) -> RelationshipOut:
    return await update_relationship(rt.memory, user["id"], persona["id"], body)


@router.get("/personas/{persona_id}/memories", tags=["memory"], responses=errors(404), response_model=MemoriesOut,
              summary="Everything the persona remembers about you: facts with where each came from and its "
                      "earlier values, recent calls, storylines")
async def get_memories(rt: Rt, user: User, persona: PersonaRow) -> Response:
    return Response(await memory_view(rt.memory, user["id"], persona["id"]), media_type="application/json")


@router.post("/personas/{persona_id}/memories", tags=["memory"], status_code=201, responses=errors(400, 404),
               summary="Tell the persona a fact (replaces the fact with the same category and key)")
async def add_memory(rt: Rt, user: User, persona: PersonaRow, body: FactIn) -> Fact:
    return await rt.memory.set_fact(user["id"], persona["id"], Fact.model_validate(body.model_dump()))


@router.delete("/personas/{persona_id}/memories/{key}", tags=["memory"], status_code=204,
                 response_class=Response, responses=errors(404),
                 summary="Forget a fact (in every category, or only in ?category=)")
async def delete_memory(rt: Rt, user: User, persona: PersonaRow,
                        key: Annotated[str, Path(pattern=FACT_KEY_PATTERN, examples=["dog_name"])],
                        category: Annotated[FactCategory | None, Query()] = None) -> Response:
    await forget_fact(rt.memory, user["id"], persona["id"], key, category)
    return Response(status_code=204)


@router.delete("/personas/{persona_id}/memories", tags=["memory"], status_code=204, response_class=Response,
                 responses=errors(404), summary="Wipe everything the persona knows about you")
async def wipe_memories(rt: Rt, user: User, persona: PersonaRow) -> Response:
    await rt.memory.forget_everything(user["id"], persona["id"])
    return Response(status_code=204)


@router.get("/personas/{persona_id}/prompt-preview", tags=["memory"], responses=errors(404),
              summary="The system prompt your next call with this persona would start with")
async def get_prompt_preview(rt: Rt, user: User, persona: PersonaRow) -> PromptPreviewOut:
    return await prompt_preview(rt, user, persona)


@router.post("/estimate", tags=["costs"], responses=errors(400, 404),
               summary="What a call of N minutes will probably cost, with warnings")
async def estimate(rt: Rt, user: User, body: EstimateIn) -> EstimateOut:
    persona = await persona_named(rt, body.persona_id)
    return await estimate_next_call(rt, user, persona, body.minutes, body.direction)


@router.get("/user/budget", tags=["budget"])
async def get_budget(rt: Rt, user: User) -> BudgetOut:
    return await read_budget(rt.budgets, user["id"])


@router.put("/user/budget", tags=["budget"], responses=errors(400), summary="Change your limits (fields left out keep their value)")
async def put_budget(rt: Rt, user: User, body: BudgetIn) -> BudgetOut:
    return await change_budget(rt.budgets, user["id"], body)


@router.get("/user/costs/summary", tags=["costs"],
              summary="Spending today and this month, by service and by persona, beside your limits")
async def get_cost_summary(rt: Rt, user: User) -> CostSummaryOut:
    return await cost_summary(rt, user)


@router.post("/calls", tags=["calls"], status_code=201,
               responses={**errors(402, model=PaymentRequiredOut), **errors(400, 404, 409, 502, 503)},
               summary="Call me back: the persona rings your phone")
async def place_call(rt: Rt, lifecycle: Lifecycle, twilio: TwilioClient, user: User, body: CallRequest) -> CallOut:
    persona = await persona_named(rt, body.persona_id)
    allowance, _sid = await place_outbound_call(lifecycle, twilio, user["id"], persona["id"])
    return CallOut.from_row(await rt.calls.get(allowance.call_id))  # type: ignore[arg-type]


@router.get("/calls", tags=["calls"], summary="Your calls, newest first")
async def list_calls(rt: Rt, user: User, limit: Annotated[int, Query(ge=1, le=100)] = 20,
                     offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> CallPage:
    rows, total = await rt.calls.list_for_user(user["id"], limit=limit, offset=offset)
    return CallPage(items=[CallOut.from_row(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/calls/{call_id}", tags=["calls"], responses=errors(404))
async def get_call(call: OwnCall) -> CallOut:
    return CallOut.from_row(call)


@router.get("/calls/{call_id}/cost", tags=["calls"], responses=errors(404),
              summary="The call's cost now: live while it runs, final once it has ended")
async def get_call_cost(lifecycle: Lifecycle, call: OwnCall) -> CallCostOut:
    return await call_cost(lifecycle, call)


@router.get("/calls/{call_id}/cost/events", tags=["calls"], responses=errors(404),
              summary="Every cost event of the call, and what the money went on")
async def get_call_cost_events(lifecycle: Lifecycle, call: OwnCall) -> CostEventsOut:
    return await call_cost_events(lifecycle, call)


@router.get("/calls/{call_id}/cost/stream", tags=["calls"], response_class=EventSourceResponse,
              responses=errors(404),
              summary="Server-sent events: `cost` every interval while the call runs, then `end` with the final cost")
async def stream_call_cost(lifecycle: Lifecycle, call: OwnCall,
                           interval: Annotated[float, Query(ge=0.1, le=10.0)] = 1.0
                           ) -> AsyncIterable[CallCostOut]:
    async for view in cost_updates(lifecycle, call["id"], interval=interval):
        yield ServerSentEvent(data=view, event="cost" if view.live else "end")  # type: ignore[misc]


@router.get("/user/payments", tags=["user"], summary="Whether calls are charged, and whether a card is on file")
async def get_payments(lifecycle: Lifecycle, user: User) -> PaymentsOut:
    return accounts.payments(lifecycle.billing, user)
