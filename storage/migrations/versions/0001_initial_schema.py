"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-26 04:29:58.825085
"""
import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('personas',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('core_prompt', sa.Text(), nullable=False),
    sa.Column('traits', sa.JSON(), nullable=False),
    sa.Column('greeting', sa.Text(), nullable=False),
    sa.Column('voice_id', sa.String(length=100), nullable=False),
    sa.Column('tts_model', sa.String(length=100), nullable=True),
    sa.Column('llm_model', sa.String(length=100), nullable=True),
    sa.Column('phone_number', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_personas')),
    sa.UniqueConstraint('phone_number', name=op.f('uq_personas_phone_number'))
    )
    op.create_table('users',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=False),
    sa.Column('phone_number', sa.String(length=32), nullable=True),
    sa.Column('time_zone', sa.String(length=64), nullable=False),
    sa.Column('stripe_customer_id', sa.String(length=100), nullable=True),
    sa.Column('stripe_payment_method_id', sa.String(length=100), nullable=True),
    sa.Column('budget_version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('phone_number', name=op.f('uq_users_phone_number'))
    )
    op.create_table('calls',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('persona_id', sa.String(length=64), nullable=False),
    sa.Column('direction', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('twilio_call_sid', sa.String(length=64), nullable=True),
    sa.Column('reserved_micros', sa.BigInteger(), nullable=False),
    sa.Column('spent_micros', sa.BigInteger(), nullable=False),
    sa.Column('limit_kind', sa.String(length=16), nullable=True),
    sa.Column('end_reason', sa.String(length=64), nullable=True),
    sa.Column('duration_seconds', sa.Integer(), nullable=True),
    sa.Column('payment_intent_id', sa.String(length=100), nullable=True),
    sa.Column('payment_status', sa.String(length=32), nullable=True),
    sa.Column('transcript', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['persona_id'], ['personas.id'], name=op.f('fk_calls_persona_id_personas')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_calls_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_calls')),
    sa.UniqueConstraint('twilio_call_sid', name=op.f('uq_calls_twilio_call_sid'))
    )
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_calls_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_user_id_created_at'), ['user_id', 'created_at'], unique=False)

    op.create_table('user_budget_settings',
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('per_call_limit_micros', sa.BigInteger(), nullable=False),
    sa.Column('daily_limit_micros', sa.BigInteger(), nullable=False),
    sa.Column('monthly_limit_micros', sa.BigInteger(), nullable=False),
    sa.Column('warning_threshold_pct', sa.Integer(), nullable=False),
    sa.Column('auto_cutoff', sa.Boolean(), nullable=False),
    sa.Column('grace_period_seconds', sa.Integer(), nullable=False),
    sa.Column('memory_token_limit', sa.Integer(), nullable=True),
    sa.Column('notify_email', sa.Boolean(), nullable=False),
    sa.Column('notify_sms', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_budget_settings_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_user_budget_settings'))
    )
    op.create_table('user_persona_relationships',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('persona_id', sa.String(length=64), nullable=False),
    sa.Column('relationship_type', sa.String(length=40), nullable=False),
    sa.Column('custom_system_prompt', sa.Text(), nullable=True),
    sa.Column('memory_config', sa.JSON(), nullable=False),
    sa.Column('total_calls', sa.Integer(), nullable=False),
    sa.Column('total_seconds', sa.Integer(), nullable=False),
    sa.Column('last_call_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['persona_id'], ['personas.id'], name=op.f('fk_user_persona_relationships_persona_id_personas'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_persona_relationships_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_persona_relationships')),
    sa.UniqueConstraint('user_id', 'persona_id', name=op.f('uq_user_persona_relationships_user_id_persona_id'))
    )
    op.create_table('call_cost_breakdowns',
    sa.Column('call_id', sa.String(length=64), nullable=False),
    sa.Column('services', sa.JSON(), nullable=False),
    sa.Column('subtotal_micros', sa.BigInteger(), nullable=False),
    sa.Column('stripe_fee_micros', sa.BigInteger(), nullable=False),
    sa.Column('total_micros', sa.BigInteger(), nullable=False),
    sa.Column('amount_charged_micros', sa.BigInteger(), nullable=False),
    sa.Column('profit_margin_micros', sa.BigInteger(), nullable=False),
    sa.Column('price_version', sa.String(length=40), nullable=False),
    sa.Column('finalized_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_call_cost_breakdowns_call_id_calls'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('call_id', name=op.f('pk_call_cost_breakdowns'))
    )
    op.create_table('call_cost_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('call_id', sa.String(length=64), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('service', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('vendor', sa.String(length=32), nullable=False),
    sa.Column('model', sa.String(length=100), nullable=False),
    sa.Column('unit', sa.String(length=32), nullable=False),
    sa.Column('quantity', sa.String(length=40), nullable=False),
    sa.Column('unit_price', sa.String(length=40), nullable=False),
    sa.Column('cost_micros', sa.BigInteger(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('price_version', sa.String(length=40), nullable=False),
    sa.Column('detail', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_call_cost_events_call_id_calls'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_call_cost_events')),
    sa.UniqueConstraint('call_id', 'seq', name=op.f('uq_call_cost_events_call_id_seq'))
    )
    op.create_table('call_summaries',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('relationship_id', sa.Integer(), nullable=False),
    sa.Column('call_id', sa.String(length=64), nullable=True),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('key_topics', sa.JSON(), nullable=False),
    sa.Column('outcome', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['relationship_id'], ['user_persona_relationships.id'], name=op.f('fk_call_summaries_relationship_id_user_persona_relationships'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_call_summaries'))
    )
    with op.batch_alter_table('call_summaries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_call_summaries_relationship_id_created_at'), ['relationship_id', 'created_at'], unique=False)

    op.create_table('memory_facts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('relationship_id', sa.Integer(), nullable=False),
    sa.Column('category', sa.String(length=40), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('source', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['relationship_id'], ['user_persona_relationships.id'], name=op.f('fk_memory_facts_relationship_id_user_persona_relationships'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_memory_facts')),
    sa.UniqueConstraint('relationship_id', 'category', 'key', name=op.f('uq_memory_facts_relationship_id_category_key'))
    )
    op.create_table('storylines',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('relationship_id', sa.Integer(), nullable=False),
    sa.Column('topic', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=40), nullable=False),
    sa.Column('details', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['relationship_id'], ['user_persona_relationships.id'], name=op.f('fk_storylines_relationship_id_user_persona_relationships'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_storylines')),
    sa.UniqueConstraint('relationship_id', 'topic', name=op.f('uq_storylines_relationship_id_topic'))
    )


def downgrade() -> None:
    op.drop_table('storylines')
    op.drop_table('memory_facts')
    with op.batch_alter_table('call_summaries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_call_summaries_relationship_id_created_at'))

    op.drop_table('call_summaries')
    op.drop_table('call_cost_events')
    op.drop_table('call_cost_breakdowns')
    op.drop_table('user_persona_relationships')
    op.drop_table('user_budget_settings')
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_calls_user_id_created_at'))
        batch_op.drop_index(batch_op.f('ix_calls_status'))

    op.drop_table('calls')
    op.drop_table('users')
    op.drop_table('personas')
