"""Service settings, read from the environment (COLLABKIT_DB, COLLABKIT_MODEL, ...) or given in code."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything ``create_app`` needs; each field is also the env var COLLABKIT_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="COLLABKIT_", protected_namespaces=())

    db: str = "sqlite:///collabkit.db"  # or postgresql+psycopg://user:pass@host/db
    model: str | None = None  # a model folder to register and make live at start-up
    max_batch: int = 10_000  # ratings per POST
    max_body_bytes: int = 4_000_000  # bigger bodies get 413 before they are parsed
    max_n: int = 100  # longest recommendation / neighbour / search list
    read_key: bool = False  # True: reads need a key too (any role)
    exposures: bool = True  # log what every recommendation response showed
    exposure_buffer: int = 1000  # rows held in memory at most: what a crash can lose
    exposure_flush_seconds: float = 1.0  # flush at least this often
    models_dir: str = "models"  # where POST /v1/models/retrain saves new versions
    retrain_memory_mb: int = 2048  # a retraining's process may use this much (estimated up front)
    canary_seconds: float = 10.0  # how often the canary rule looks at both arms (0: never)
    reload_seconds: float = 2.0  # poll the store for a live version changed elsewhere (CLI)
    # items the live version was not trained on are recommended once they have this many ratings
    # by users it knows (item fold-in; 0: never)
    new_item_ratings: int = 10
    new_item_seconds: float = 30.0  # how often the store is asked for such items (in the background)
    # catalogues of this many items or more are searched by an approximate inner-product index
    # (recommend.ann: recall@10 >= 0.95 against exact search); smaller ones exactly
    ann_items: int = 1_000_000
