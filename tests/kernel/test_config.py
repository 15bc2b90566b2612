"""Configuration: file, overrides, validation errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from kubecore.config import (
    KERNEL_SECTION,
    ConfigError,
    ConfigSection,
    SectionModel,
    load_file,
    merge_overrides,
    parse_override,
    resolve,
)


class Demo(SectionModel):
    port: int = Field(default=80, ge=0, le=65535)
    names: list[str] = Field(default_factory=list)
    interval: float = 20.0


SECTIONS = [KERNEL_SECTION, ConfigSection("demo", Demo)]


def test_defaults_fill_every_section() -> None:
    settings = resolve({}, SECTIONS)
    assert settings.get(Demo) == Demo()
    assert settings.kernel.role == "all"
    assert settings.kernel.plugins is None


def test_values_are_typed() -> None:
    settings = resolve({"demo": {"port": 8081, "names": ["a"]}}, SECTIONS)
    assert settings.get(Demo).port == 8081
    assert settings["demo"] == Demo(port=8081, names=["a"])


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"demo": {"prot": 1}}, "demo.prot: unknown key"),
        ({"demo": {"port": "abc"}}, "demo.port: Input should be a valid integer"),
        ({"demo": {"port": 70000}}, "demo.port: Input should be less than or equal to 65535"),
        ({"demo": {"names": "a"}}, "demo.names: Input should be a valid list"),
        ({"kubecore": {"role": "boss"}}, "kubecore.role: Input should be 'all', 'master' or"),
        ({"nosuch": {"a": 1}}, "[nosuch]: unknown section"),
        ({"demo": 3}, "[demo]: expected a section"),
        ({"port": 3}, "port: top-level keys belong in a section"),
    ],
)
def test_errors_name_the_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(raw, SECTIONS)
    assert message in str(info.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        resolve({"demo": {"port": "x", "extra": 1}, "other": {}}, SECTIONS)
    text = str(info.value)
    assert "demo.port" in text
    assert "demo.extra: unknown key" in text
    assert "[other]: unknown section" in text


def test_sections_of_unselected_plugins_are_ignored() -> None:
    settings = resolve({"store_etcd": {"endpoints": ["x"]}}, SECTIONS, ignorable={"store_etcd"})
    assert "store_etcd" not in settings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("demo.port=8081", ("demo", "port", 8081)),
        ("demo.names=[\"a\", \"b\"]", ("demo", "names", ["a", "b"])),
        ("demo.flag=true", ("demo", "flag", True)),
        ("demo.path=/var/lib/x", ("demo", "path", "/var/lib/x")),
        ("demo.empty=", ("demo", "empty", "")),
    ],
)
def test_parse_override(text: str, expected: tuple[str, str, object]) -> None:
    assert parse_override(text) == expected


@pytest.mark.parametrize("text", ["port=1", "demo.port", ".port=1", "demo.=1"])
def test_malformed_override(text: str) -> None:
    with pytest.raises(ConfigError, match=r"expected SECTION\.KEY=VALUE"):
        parse_override(text)


def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "kubecore.toml"
    path.write_text('[demo]\nport = 1\nnames = ["x"]\n')
    raw = merge_overrides(load_file(path), ["demo.port=2"])
    assert resolve(raw, SECTIONS).get(Demo) == Demo(port=2, names=["x"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[demo\nport = 1", "config file"),
        (b"\xff\xfe\x00", "is not UTF-8 text"),
    ],
)
def test_bad_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_file(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_file(tmp_path / "absent.toml")
