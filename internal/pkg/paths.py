"""Where the project's data files live: sql/ (migrations) and templates/ (the UI).

In a source checkout (editable install) they sit beside ``internal/``; an installed image sets
``L0_HOME`` to the directory that holds them (the Dockerfile uses /app).
"""

from __future__ import annotations

import os
from pathlib import Path


def project_home() -> Path:
    return Path(os.environ.get("L0_HOME") or Path(__file__).resolve().parents[2])


def migrations_dir() -> Path:
    return project_home() / "sql"


def templates_dir() -> Path:
    return project_home() / "templates"
