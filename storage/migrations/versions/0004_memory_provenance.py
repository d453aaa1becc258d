"""memory provenance and history; forgotten values as keyed hashes

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _relationship_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["relationship_id"], ["user_persona_relationships.id"],
                                   name=op.f(f"fk_{table}_relationship_id_user_persona_relationships"),
                                   ondelete="CASCADE")


def upgrade() -> None:
    with op.batch_alter_table("memory_facts") as batch:
        batch.add_column(sa.Column("source_call_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("source_text", sa.Text(), nullable=True))
    op.create_table(
        "memory_fact_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("relationship_id", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("source_call_id", sa.String(length=64), nullable=True),
        sa.Column("source_text", sa.Text(), nullable=True),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=False),
        _relationship_fk("memory_fact_history"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memory_fact_history")),
    )
    op.create_index(op.f("ix_memory_fact_history_relationship_id_category_key"), "memory_fact_history",
                    ["relationship_id", "category", "key"])
    op.create_table(
        "forgotten_values",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("relationship_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("words", sa.Integer(), nullable=False),
        sa.Column("forgotten_at", sa.DateTime(timezone=True), nullable=False),
        _relationship_fk("forgotten_values"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forgotten_values")),
    )
    op.create_index(op.f("ix_forgotten_values_relationship_id"), "forgotten_values", ["relationship_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_forgotten_values_relationship_id"), table_name="forgotten_values")
    op.drop_table("forgotten_values")
    op.drop_index(op.f("ix_memory_fact_history_relationship_id_category_key"), table_name="memory_fact_history")
    op.drop_table("memory_fact_history")
    with op.batch_alter_table("memory_facts") as batch:
        batch.drop_column("source_text")
        batch.drop_column("source_call_id")
