"""run_problems.column_name holds an XML element path (payt-xml), not only a CSV column name

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("run_problems") as batch:
        batch.alter_column("column_name", type_=sa.String(255), existing_type=sa.String(64))


def downgrade() -> None:
    with op.batch_alter_table("run_problems") as batch:
        batch.alter_column("column_name", type_=sa.String(64), existing_type=sa.String(255))
