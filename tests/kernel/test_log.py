"""``kubecore.log.configure``: what ``kubecore run`` writes to stderr."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from kubecore import log


@pytest.fixture
def configured() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        structlog.reset_defaults()
        root.handlers[:], root.level = handlers, level


def lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_json_lines_name_their_logger_and_filter_by_level(
    configured: None, capsys: pytest.CaptureFixture[str]
) -> None:
    log.configure("json", "info")
    log.get_logger("kubecore.demo", component="x").info("hello", n=1)
    log.get_logger("kubecore.demo").debug("below the level")
    structlog.get_logger("third.party").warning("named")
    structlog.get_logger().error("unnamed")
    logging.getLogger("hypercorn.error").error("foreign")
    got = lines(capsys.readouterr().err)
    assert [(line["logger"], line["event"], line["level"]) for line in got] == [
        ("kubecore.demo", "hello", "info"),
        ("third.party", "named", "warning"),
        (__name__, "unnamed", "error"),
        ("hypercorn.error", "foreign", "error"),
    ]
    assert got[0]["component"] == "x" and got[0]["n"] == 1
    assert all(str(line["timestamp"]).endswith("Z") for line in got)


def test_console_lines_and_tracebacks(
    configured: None, capsys: pytest.CaptureFixture[str]
) -> None:
    log.configure("console", "debug")
    logger = log.get_logger("kubecore.demo")
    logger.debug("shown at debug", key="value")
    try:
        raise ValueError("boom")
    except ValueError as exc:
        logger.error("failed", exc_info=exc)
    err = capsys.readouterr().err
    assert "shown at debug" in err and "[kubecore.demo]" in err and "key=value" in err
    assert "ValueError: boom" in err
