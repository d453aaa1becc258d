"""payments and memory extraction state; memory deletions

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("authorized_micros", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("extraction_status", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("extraction_attempts", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "memory_deletions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("relationship_id", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=True),
        sa.Column("key", sa.String(length=200), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["relationship_id"], ["user_persona_relationships.id"],
                                name=op.f("fk_memory_deletions_relationship_id_user_persona_relationships"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memory_deletions")),
    )
    op.create_index(op.f("ix_memory_deletions_relationship_id_deleted_at"), "memory_deletions",
                    ["relationship_id", "deleted_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_memory_deletions_relationship_id_deleted_at"), table_name="memory_deletions")
    op.drop_table("memory_deletions")
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("extraction_attempts")
        batch.drop_column("extraction_status")
        batch.drop_column("authorized_micros")
