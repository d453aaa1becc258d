"""The HTTP API's data shapes: what clients send and what they get back.

Pydantic only, beside the routes that speak them; the domain keeps its own
types and `api.views` translates. Conventions (money strings, strict input,
id patterns) are in `common`; the shapes are grouped by subject.
"""

from api.schemas.accounts import *  # noqa: F401,F403
from api.schemas.books import *  # noqa: F401,F403
from api.schemas.common import *  # noqa: F401,F403
from api.schemas.memory import *  # noqa: F401,F403
