"""Columns several tables spell the same way, for the revisions in ``versions/`` to share.

A revision must create the same tables for as long as it exists: once a revision uses a function
here, the function is frozen. A later revision that needs other columns gets a new function.
"""

import sqlalchemy as sa

#: a row id that may pass 2**31 (a row per rating or exposure); SQLite autoincrements INTEGER only
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def epoch_time(name: str, *, nullable: bool = False) -> sa.Column:
    """A moment, in seconds since the epoch (every time in the store is one)."""
    return sa.Column(name, sa.Float(), nullable=nullable)


def version_ref(name: str, *, nullable: bool) -> sa.Column:
    """A model version, by its id in ``model_versions``."""
    return sa.Column(name, sa.Integer(), sa.ForeignKey("model_versions.id"), nullable=nullable)


def user_item_event() -> list[sa.Column]:
    """The first columns of a row about one user and one item (a rating, an exposure): its own
    64-bit id, then the user's and the item's raw ids."""
    return [
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("item_id", sa.String(64), nullable=False),
    ]


def named_value(key: str, value: sa.types.TypeEngine) -> list[sa.Column]:
    """The columns of a table of named values (alert thresholds, the store's facts): the name, in
    column ``key`` (the primary key), then ``value`` of type ``value`` and when it was last set."""
    return [
        sa.Column(key, sa.String(32), primary_key=True),
        sa.Column("value", value, nullable=False),
        epoch_time("updated_at"),
    ]
