"""The one schema shared by SQLite and PostgreSQL.

Money columns are integer micro-dollars (1 USD = 1,000,000) so both engines store
them exactly; fractional quantities (audio seconds) and unit prices are stored as
decimal *text* because SQLite has no exact decimal type.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _ts(name: str, nullable: bool = False) -> Column:
    return Column(name, DateTime(timezone=True), nullable=nullable)


def _relationship_id() -> Column:
    """Memory belongs to one (user, persona) relationship and goes with it."""
    return Column("relationship_id", Integer, ForeignKey("user_persona_relationships.id", ondelete="CASCADE"),
                  nullable=False)


users = Table(
    "users",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("display_name", String(200), nullable=False, default=""),
    Column("phone_number", String(32), unique=True, nullable=True),
    Column("time_zone", String(64), nullable=False, default="UTC"),
    Column("stripe_customer_id", String(100), nullable=True),
    Column("stripe_payment_method_id", String(100), nullable=True),
    # Bumped inside every budget reservation: the UPDATE takes the row lock that
    # serialises concurrent reservations of one user across processes.
    Column("budget_version", Integer, nullable=False, default=0),
    _ts("created_at"),
)

personas = Table(
    "personas",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("core_prompt", Text, nullable=False),
    Column("traits", JSON, nullable=False, default=list),
    Column("greeting", Text, nullable=False, default=""),
    Column("voice_id", String(100), nullable=False),
    Column("tts_model", String(100), nullable=True),
    Column("llm_model", String(100), nullable=True),
    Column("phone_number", String(32), unique=True, nullable=True),
    _ts("created_at"),
)

user_persona_relationships = Table(
    "user_persona_relationships",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", String(64), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("persona_id", String(64), ForeignKey("personas.id", ondelete="CASCADE"), nullable=False),
    Column("relationship_type", String(40), nullable=False, default="friend"),
    Column("custom_system_prompt", Text, nullable=True),
    Column("memory_config", JSON, nullable=False, default=dict),
    Column("total_calls", Integer, nullable=False, default=0),
    Column("total_seconds", Integer, nullable=False, default=0),
    _ts("last_call_at", nullable=True),
    _ts("created_at"),
    _ts("updated_at"),
    UniqueConstraint("user_id", "persona_id"),
)

memory_facts = Table(
    "memory_facts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _relationship_id(),
    Column("category", String(40), nullable=False),
    Column("key", String(200), nullable=False),
    Column("value", Text, nullable=False),
    # Provenance (docs/memory.md): who set it ("user", "operator", "extraction", "call"), in which call,
    # and the caller's words it came from; `updated_at` is when this value was learned.
    Column("source", String(40), nullable=False, default="user"),
    Column("source_call_id", String(64), nullable=True),
    Column("source_text", Text, nullable=True),
    _ts("created_at"),
    _ts("updated_at"),
    UniqueConstraint("relationship_id", "category", "key"),
)

memory_fact_history = Table(
    "memory_fact_history",
    metadata,
    # A fact's earlier values: an update invalidates the old value instead of overwriting it.
    Column("id", Integer, primary_key=True, autoincrement=True),
    _relationship_id(),
    Column("category", String(40), nullable=False),
    Column("key", String(200), nullable=False),
    Column("value", Text, nullable=False),
    Column("source", String(40), nullable=False),
    Column("source_call_id", String(64), nullable=True),
    Column("source_text", Text, nullable=True),
    _ts("valid_from"),
    _ts("replaced_at"),
    Index(None, "relationship_id", "category", "key"),
)

forgotten_values = Table(
    "forgotten_values",
    metadata,
    # What the user deleted, as keyed hashes of its words (never the words): text written later (an
    # extraction of a call that was live at the time) is checked against them and redacted.
    Column("id", Integer, primary_key=True, autoincrement=True),
    _relationship_id(),
    Column("digest", String(64), nullable=False),
    Column("words", Integer, nullable=False),
    _ts("forgotten_at"),
    Index(None, "relationship_id"),
)

call_summaries = Table(
    "call_summaries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _relationship_id(),
    Column("call_id", String(64), nullable=True),
    Column("summary", Text, nullable=False),
    Column("key_topics", JSON, nullable=False, default=list),
    Column("outcome", String(200), nullable=False, default=""),
    _ts("created_at"),
    Index(None, "relationship_id", "created_at"),
)

storylines = Table(
    "storylines",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _relationship_id(),
    Column("topic", String(200), nullable=False),
    Column("status", String(40), nullable=False, default="ongoing"),
    Column("details", Text, nullable=False, default=""),
    _ts("updated_at"),
    UniqueConstraint("relationship_id", "topic"),
)

calls = Table(
    "calls",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", String(64), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("persona_id", String(64), ForeignKey("personas.id"), nullable=False),
    Column("direction", String(16), nullable=False),
    # created -> live -> ended (or refused). Only live calls hold a reservation.
    Column("status", String(16), nullable=False),
    Column("twilio_call_sid", String(64), nullable=True, unique=True),
    Column("reserved_micros", BigInteger, nullable=False, default=0),
    Column("spent_micros", BigInteger, nullable=False, default=0),
    Column("limit_kind", String(16), nullable=True),
    Column("end_reason", String(64), nullable=True),
    Column("duration_seconds", Integer, nullable=True),
    Column("payment_intent_id", String(100), nullable=True),
    # none -> authorized -> capture_pending -> captured | canceled (or failed)
    Column("payment_status", String(32), nullable=True),
    Column("authorized_micros", BigInteger, nullable=True),
    # pending -> done | failed (retried by reconciliation, at most MAX_EXTRACTION_ATTEMPTS)
    Column("extraction_status", String(16), nullable=True),
    Column("extraction_attempts", Integer, nullable=False, default=0, server_default="0"),
    Column("transcript", JSON, nullable=True),  # the turns, kept for summaries and memory extraction
    _ts("created_at"),
    _ts("started_at", nullable=True),
    _ts("ended_at", nullable=True),
    # Written with every cost flush: a live call whose heartbeat stops (its
    # process died) is finished by start-up reconciliation in any process.
    _ts("heartbeat_at", nullable=True),
    # One owner per live call (docs/calls.md): the worker that won created -> live,
    # and a fencing token (the epoch) every write of that owner carries. Another
    # worker may take the call over only once the lease has expired, by raising
    # the epoch; the old owner's writes then match no row.
    Column("owner", String(64), nullable=True),
    Column("lease_epoch", Integer, nullable=False, default=0, server_default="0"),
    _ts("lease_expires_at", nullable=True),
    Column("end_requested", String(64), nullable=True),  # set by any worker, acted on by the owner
    _ts("claimed_until", nullable=True),  # reconciliation work on this call is claimed by one worker
    Index(None, "user_id", "created_at"),
    Index(None, "status"),
)

call_cost_events = Table(
    "call_cost_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("call_id", String(64), ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
    # Per-call sequence number: a retried flush re-inserts nothing twice.
    Column("seq", Integer, nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("service", String(32), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("vendor", String(32), nullable=False),
    Column("model", String(100), nullable=False),
    Column("unit", String(32), nullable=False),
    Column("quantity", String(40), nullable=False),
    Column("unit_price", String(40), nullable=False),
    Column("cost_micros", BigInteger, nullable=False),
    Column("source", String(16), nullable=False),
    Column("price_version", String(40), nullable=False),
    Column("detail", String(200), nullable=True),
    _ts("created_at"),
    UniqueConstraint("call_id", "seq"),
)

call_cost_breakdowns = Table(
    "call_cost_breakdowns",
    metadata,
    Column("call_id", String(64), ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True),
    Column("services", JSON, nullable=False),
    Column("subtotal_micros", BigInteger, nullable=False),
    Column("stripe_fee_micros", BigInteger, nullable=False),
    Column("total_micros", BigInteger, nullable=False),
    Column("amount_charged_micros", BigInteger, nullable=False),
    Column("profit_margin_micros", BigInteger, nullable=False),
    Column("price_version", String(40), nullable=False),
    _ts("finalized_at"),
)

user_budget_settings = Table(
    "user_budget_settings",
    metadata,
    Column("user_id", String(64), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("per_call_limit_micros", BigInteger, nullable=False, default=10_000_000),
    Column("daily_limit_micros", BigInteger, nullable=False, default=50_000_000),
    Column("monthly_limit_micros", BigInteger, nullable=False, default=100_000_000),
    Column("warning_threshold_pct", Integer, nullable=False, default=75),
    Column("auto_cutoff", Boolean, nullable=False, default=True),
    Column("grace_period_seconds", Integer, nullable=False, default=10),
    Column("memory_token_limit", Integer, nullable=True),
    Column("notify_email", Boolean, nullable=False, default=False),
    Column("notify_sms", Boolean, nullable=False, default=True),
    _ts("updated_at"),
)

memory_deletions = Table(
    "memory_deletions",
    metadata,
    # What the user deleted: memory extraction of a call that started before the
    # deletion must not bring it back.
    Column("id", Integer, primary_key=True, autoincrement=True),
    _relationship_id(),
    Column("category", String(40), nullable=True),
    Column("key", String(200), nullable=True),  # null: everything was wiped
    _ts("deleted_at"),
    Index(None, "relationship_id", "deleted_at"),
)
