"""The `collabkit` command: one sub-command per verb, one module per group of verbs.

Every command that reports numbers takes --json and then prints exactly one JSON object on
stdout; tables, progress bars and messages go to stderr in that mode.
"""

from collabkit.cli import (  # noqa: F401  (importing registers the commands)
    datasets,
    evaluate,
    interpret,
    recommend,
    serve,
    simulate,
    train,
    update,
)
from collabkit.cli.common import app

__all__ = ["app"]
