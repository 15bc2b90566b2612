"""The main job: ``kubecore run`` with no plugin selection, as a real process."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from kubecore.plugins import BUILTIN_PLUGINS, DEFAULT_PLUGINS, installed_names
from tests.processes import KubecoreProcess, run_kubecore


def test_all_in_one_on_embedded_defaults(tmp_path: Path) -> None:
    args = ["run", "--data-dir", str(tmp_path), "--log-format", "json",
            "--set", "apiserver.port=0", "--set", "kubelet.port=0"]
    with KubecoreProcess(args) as proc:
        starting = proc.wait_event("starting")
        url = proc.wait_event("listening", logger="kubecore.apiserver")["url"]
        proc.wait_event("kubecore is up")
        assert httpx.get(f"{url}/healthz").text == "ok"
        assert proc.stop() == 0
    expected = [name for name in DEFAULT_PLUGINS if name in installed_names()]
    assert starting["plugins"] == [*BUILTIN_PLUGINS, *expected]
    assert starting["role"] == "all"
    assert starting["store"] == "store_sqlite"
    assert "Traceback" not in proc.output


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\xff" * 1000,
        b"[" * 10_000 + b"]" * 10_000,
        b"a: &a [x, x, x, x, x, x, x, x, x]\n"
        + b"".join(b"%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n"
                   % ((c, c) + (c - 1,) * 9) for c in range(ord("b"), ord("k"))),
        b"kind: Pod\nid: " + b"x" * 5_000_000 + b"\n",
    ],
    ids=["binary", "deep-nesting", "alias-bomb", "5MB"],
)
def test_validate_never_gives_a_traceback(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    result = run_kubecore(["validate", "-f", str(path)])
    assert result.returncode == 1
    assert str(path) in result.stderr
    assert "Traceback" not in result.stderr
