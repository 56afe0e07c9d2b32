"""collabkit serve: a recommendation service over a durable ratings store.

``create_app(Settings(...))`` builds the FastAPI app; ``collabkit serve`` runs it with uvicorn.
store (SQLAlchemy tables, Alembic migrations) -> live (the model served, swapped atomically)
-> recommender (what an answer computes) -> api/ (one router per resource); rollout retrains
and gates new versions.
"""

from collabkit.serve.app import create_app
from collabkit.serve.settings import Settings

__all__ = ["Settings", "create_app"]
