"""The ``[store_sqlite]`` configuration section."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from kubecore.config import SectionModel

DEFAULT_FILE_NAME = "store.sqlite3"


class SqliteStoreConfig(SectionModel):
    """``[store_sqlite]``: where the embedded store keeps its file and how much history."""

    path: Path | None = Field(
        default=None,
        description=f"database file; unset = <kubecore.data_dir>/{DEFAULT_FILE_NAME}",
    )
    retain_revisions: int = Field(
        default=10000,
        ge=1,
        description="revisions of change history kept for watches; older ones are compacted",
    )
    synchronous: Literal["full", "normal"] = Field(
        default="normal",
        description="SQLite synchronous mode: normal (WAL) survives a crash of the process;"
        " full also survives power loss, at a disk flush per write",
    )
    busy_timeout: float = Field(
        default=5.0,
        gt=0,
        description="seconds to wait for the file lock before reporting the store unavailable",
    )
