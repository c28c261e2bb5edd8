"""Initial store: leads, cursors, lead events, followers, positions, orders, fills.

Revision ID: 0001
Revises: none
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "leads",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("address", sa.String(length=128), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leads")),
        sa.UniqueConstraint("source", "address", name=op.f("uq_leads_source_address")),
    )
    op.create_table(
        "followers",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=False),
        sa.Column("venue", sa.String(length=32), nullable=False),
        sa.Column("address", sa.String(length=128), nullable=False),
        sa.Column("credentials_ref", sa.String(length=256), nullable=False),
        sa.Column("profile", sa.JSON(), nullable=False),
        sa.Column("equity", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"], name=op.f("fk_followers_lead_id_leads")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_followers")),
    )
    with op.batch_alter_table("followers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_followers_lead_id"), ["lead_id"], unique=False)

    op.create_table(
        "lead_events",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["lead_id"], ["leads.id"], name=op.f("fk_lead_events_lead_id_leads")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lead_events")),
    )
    with op.batch_alter_table("lead_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lead_events_lead_id"), ["lead_id"], unique=False)

    op.create_table(
        "source_cursors",
        sa.Column("lead_id", sa.Integer(), nullable=False),
        sa.Column("fill_time_ms", sa.BigInteger(), nullable=False),
        sa.Column("tid", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["lead_id"], ["leads.id"], name=op.f("fk_source_cursors_lead_id_leads")
        ),
        sa.PrimaryKeyConstraint("lead_id", name=op.f("pk_source_cursors")),
    )
    op.create_table(
        "fills",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("follower_id", sa.String(length=128), nullable=False),
        sa.Column("tid", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=34), nullable=True),
        sa.Column("exchange_id", sa.String(length=64), nullable=True),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("amount", sa.String(length=64), nullable=False),
        sa.Column("price", sa.String(length=64), nullable=False),
        sa.Column("fee", sa.Float(), nullable=False),
        sa.Column("closed_pnl", sa.Float(), nullable=False),
        sa.Column("time_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["follower_id"], ["followers.id"], name=op.f("fk_fills_follower_id_followers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fills")),
        sa.UniqueConstraint("follower_id", "tid", name=op.f("uq_fills_follower_id_tid")),
    )
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fills_client_id"), ["client_id"], unique=False)

    op.create_table(
        "orders",
        sa.Column("client_id", sa.String(length=34), nullable=False),
        sa.Column("lead_event_id", sa.String(length=200), nullable=False),
        sa.Column("follower_id", sa.String(length=128), nullable=False),
        sa.Column("leg", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("amount", sa.String(length=64), nullable=False),
        sa.Column("price_limit", sa.String(length=64), nullable=True),
        sa.Column("reduce_only", sa.Boolean(), nullable=False),
        sa.Column("time_in_force", sa.String(length=8), nullable=False),
        sa.Column("leverage", sa.Float(), nullable=True),
        sa.Column("collateral", sa.Float(), nullable=True),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("exchange_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("sent_ms", sa.BigInteger(), nullable=True),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["follower_id"], ["followers.id"], name=op.f("fk_orders_follower_id_followers")
        ),
        sa.ForeignKeyConstraint(
            ["lead_event_id"], ["lead_events.id"], name=op.f("fk_orders_lead_event_id_lead_events")
        ),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_orders")),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index(
            "ix_orders_in_flight",
            ["state", "sent_ms"],
            unique=False,
            sqlite_where=sa.text("state IN ('sent', 'unknown', 'acknowledged')"),
            postgresql_where=sa.text("state IN ('sent', 'unknown', 'acknowledged')"),
        )
        batch_op.create_index(
            "ix_orders_pending",
            ["priority", "created_ms", "seq"],
            unique=False,
            sqlite_where=sa.text("state = 'pending'"),
            postgresql_where=sa.text("state = 'pending'"),
        )

    op.create_table(
        "positions",
        sa.Column("follower_id", sa.String(length=128), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("position", sa.String(length=64), nullable=False),
        sa.Column("entry_price", sa.Float(), nullable=True),
        sa.Column("collateral", sa.Float(), nullable=False),
        sa.Column("residual", sa.Float(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["follower_id"], ["followers.id"], name=op.f("fk_positions_follower_id_followers")
        ),
        sa.PrimaryKeyConstraint("follower_id", "symbol", name=op.f("pk_positions")),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("positions")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_orders_pending",
            sqlite_where=sa.text("state = 'pending'"),
            postgresql_where=sa.text("state = 'pending'"),
        )
        batch_op.drop_index(
            "ix_orders_in_flight",
            sqlite_where=sa.text("state IN ('sent', 'unknown', 'acknowledged')"),
            postgresql_where=sa.text("state IN ('sent', 'unknown', 'acknowledged')"),
        )

    op.drop_table("orders")
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fills_client_id"))

    op.drop_table("fills")
    op.drop_table("source_cursors")
    with op.batch_alter_table("lead_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lead_events_lead_id"))

    op.drop_table("lead_events")
    with op.batch_alter_table("followers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_followers_lead_id"))

    op.drop_table("followers")
    op.drop_table("leads")
