"""Configuration: one TOML file with a section per component or plugin, CLI overrides.

Each section's schema is a pydantic model declared by whoever owns the section (the
kernel's ``[kubecore]``, built-in components, plugins) through the
``kubecore_config_section`` hook. Unknown keys and wrong types are errors that name the
key (``apiserver.port: Input should be a valid integer``); nothing is silently ignored,
except sections that belong to installed plugins which were not selected for this run.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubecore.errors import KubecoreError


class ConfigError(KubecoreError):
    """The configuration file or a CLI override is invalid; ``str()`` says where."""


class SectionModel(BaseModel):
    """Base for every section schema: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class ConfigSection:
    """A section a plugin or component declares: its ``[name]``, schema and summary."""

    name: str
    model: type[SectionModel]
    doc: str = ""


Role = Literal["all", "master", "node"]
LogFormat = Literal["console", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "kubecore"


class KernelConfig(SectionModel):
    """``[kubecore]``: what runs and where it keeps its state."""

    plugins: list[str] | None = Field(
        default=None, description="plugins to load by name; unset = the default set"
    )
    role: Role = Field(default="all", description="all (master + node), master or node")
    hostname: str | None = Field(
        default=None, description="this node's name; unset = the machine's fully qualified name"
    )
    data_dir: Path = Field(
        default_factory=default_data_dir, description="where state (store, pod dirs) is kept"
    )
    log_format: LogFormat = Field(default="console", description="console or json")
    log_level: LogLevel = Field(default="info", description="debug, info, warning or error")
    api_server: str | None = Field(
        default=None,
        description="URL of the apiserver this process's components use; unset = the"
        " apiserver this process runs (none on a node alone: the kubelet runs standalone)",
    )
    api_token_file: Path | None = Field(
        default=None, description="file whose first line is the bearer token for api_server"
    )
    shutdown_grace: float = Field(
        default=10.0, ge=0, description="seconds each component gets to stop on SIGTERM"
    )
    gc_threshold: int = Field(
        default=50_000, ge=0,
        description="allocations between the interpreter's young garbage collections in"
        " `kubecore run`; 0 = Python's own (700), which makes decoding many API objects"
        " several times slower",
    )


KERNEL_SECTION = ConfigSection("kubecore", KernelConfig, "the kernel")

M = TypeVar("M", bound=SectionModel)


class Settings:
    """Validated configuration: one model instance per known section."""

    def __init__(self, sections: Mapping[str, SectionModel]) -> None:
        self._sections = dict(sections)

    def __getitem__(self, name: str) -> SectionModel:
        return self._sections[name]

    def __contains__(self, name: object) -> bool:
        return name in self._sections

    def get(self, model: type[M]) -> M:
        """The section whose schema is ``model`` (typed access for plugins)."""
        for value in self._sections.values():
            if type(value) is model:
                return value
        raise KeyError(f"no config section with schema {model.__name__}")

    @property
    def kernel(self) -> KernelConfig:
        return self.get(KernelConfig)

    def items(self) -> Iterable[tuple[str, SectionModel]]:
        return self._sections.items()


def load_file(path: Path) -> dict[str, Any]:
    """Read a TOML config file; a missing or malformed file is a :class:`ConfigError`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None


def parse_override(text: str) -> tuple[str, str, Any]:
    """``section.key=value`` -> (section, key, value); the value is read as a TOML value
    when it is one (``8081``, ``true``, ``["a", "b"]``) and as a plain string otherwise."""
    name, sep, raw = text.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot or not section or not key:
        raise ConfigError(f"override {text!r}: expected SECTION.KEY=VALUE")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return section, key, value


def merge_overrides(raw: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``raw`` with each ``section.key=value`` override applied."""
    merged: dict[str, Any] = {
        name: dict(value) if isinstance(value, dict) else value for name, value in raw.items()
    }
    for text in overrides:
        section, key, value = parse_override(text)
        target = merged.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"override {text!r}: [{section}] is not a section")
        target[key] = value
    return merged


def _format_error(section: str, error: Mapping[str, Any]) -> str:
    where = ".".join([section, *(str(part) for part in error["loc"])])
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    given = error.get("input")
    suffix = "" if isinstance(given, dict) else f" (got {given!r})"
    return f"{where}: {error['msg']}{suffix}"


def resolve(
    raw: Mapping[str, Any],
    sections: Iterable[ConfigSection],
    *,
    ignorable: Iterable[str] = (),
) -> Settings:
    """Validate ``raw`` against the declared ``sections``.

    Sections in ``ignorable`` (installed plugins that were not selected) are skipped; any
    other unknown section is an error. Every problem is reported at once.
    """
    declared = {section.name: section for section in sections}
    skip = set(ignorable)
    problems: list[str] = []
    for name, value in raw.items():
        if name in declared or name in skip:
            continue
        if isinstance(value, dict):
            known = ", ".join(sorted(declared))
            problems.append(f"[{name}]: unknown section (known sections: {known})")
        else:
            problems.append(f"{name}: top-level keys belong in a section such as [kubecore]")
    built: dict[str, SectionModel] = {}
    for name, section in declared.items():
        value = raw.get(name, {})
        if not isinstance(value, dict):
            problems.append(f"[{name}]: expected a section (table), got {value!r}")
            continue
        try:
            built[name] = section.model.model_validate(value)
        except ValidationError as exc:
            problems.extend(_format_error(name, err) for err in exc.errors())
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return Settings(built)
