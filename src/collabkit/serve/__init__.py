"""collabkit serve: a recommendation service over a durable ratings store.

``create_app(Settings(...))`` builds the FastAPI app; ``collabkit serve`` runs it with uvicorn.
store (SQLAlchemy tables, Alembic migrations) -> engine (a model version prepared once: a
request is array operations) -> live (the engine served, swapped atomically) -> api/ (one
router per resource); rollout retrains and gates new versions.
"""

from collabkit.serve.app import create_app
from collabkit.serve.settings import Settings

__all__ = ["Settings", "create_app"]
