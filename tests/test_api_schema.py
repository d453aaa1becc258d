"""Schemathesis against our OpenAPI document: generated requests to the served app, with real tokens.

Every operation gets a bounded number of generated cases, valid and invalid,
and all of schemathesis' default checks must pass: no 5xx, every status and
content type documented, every body matching its schema, invalid input
refused, valid input accepted. Users' routes run with a user's JWT and
operators' routes with the ADMIN_TOKEN, so cases get past auth to the code
behind it (the unauthenticated side is the built-in auth checks' job, and
tests/test_api_access.py's). Twilio is the REST fake, so "call me back" dials.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from agent.accounts.auth import mint_user_token
from agent.settings import Settings
from server import create_app
from fakes import ServedApp, TwilioRestFake

# The same cases on every run, so the suite is repeatable; API_SCHEMA_RANDOM=1 (and more
# API_SCHEMA_EXAMPLES) explores new ones when hunting for bugs.
EXAMPLES_PER_OPERATION = int(os.environ.get("API_SCHEMA_EXAMPLES", "25"))
DERANDOMIZE = os.environ.get("API_SCHEMA_RANDOM", "") != "1"
ACCOUNT_SID, AUTH_TOKEN = "AC" + "5" * 32, "schema-test-token"

DATA = Path(tempfile.mkdtemp(prefix="api-schema-"))
CONFIG = Settings(_env_file=None, data_dir=DATA, database_url=f"sqlite:///{DATA / 'api.db'}",
                  public_base_url="http://127.0.0.1:1",  # the served URLs are set once the servers run
                  jwt_secret="s" * 40, admin_token="a" * 32,
                  twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN)
APP = create_app(CONFIG)

schema = schemathesis.openapi.from_dict(APP.openapi(), config=schemathesis.Config.from_dict({
    # The token is ours (below); generated Authorization values would be replaced by it anyway.
    "generation": {"with-security-parameters": False},
    "checks": {
        # 402: a valid "call me back" once the generated calls have used up the day's budget.
        "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "402", "403", "404", "409"]},
    },
    "operations": [{
        # Its rules between fields (daily >= per-call, monthly >= daily) cannot be said in JSON Schema:
        # a request that breaks them is schema-valid and still a 422. tests/test_api_budget.py covers them.
        "include-path": "/api/user/budget", "include-method": "PUT",
        "checks": {"positive_data_acceptance": {"enabled": False}},
    }],
})).exclude(
    # Twilio's webhooks answer only requests Twilio signed (and only with Twilio settings):
    # tests/test_phone_call.py drives them with signed requests.
    path_regex="^/twilio/")


@pytest.fixture(scope="module")
def server():
    twilio = TwilioRestFake(ACCOUNT_SID, AUTH_TOKEN)
    with ServedApp(twilio.app) as fake, ServedApp(APP, lifespan="on") as served:
        CONFIG.twilio_api_base_url = fake.http_url
        CONFIG.public_base_url = served.http_url
        yield served
    shutil.rmtree(DATA, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=DERANDOMIZE,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_api_conforms_to_its_openapi_document(case, server):
    token = CONFIG.admin_token if case.path.startswith("/api/admin/") else mint_user_token("demo", CONFIG.jwt_secret)
    case.call_and_validate(base_url=server.http_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
