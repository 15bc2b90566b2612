"""``kubecore validate``: files, directories, stdin, error lines, summary, exit status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubecore.cli import main
from kubecore.cli.validate import validate

DATA = Path(__file__).resolve().parent.parent / "data" / "manifests"

GOOD_POD = {"kind": "Pod", "apiVersion": "v1beta1", "id": "web", "desiredState": {
    "manifest": {"version": "v1beta1", "containers": [{"name": "www", "image": "nginx"}]}}}


def run(*args: str, stdin: bytes | str | None = None) -> Result:
    return CliRunner().invoke(validate, list(args), input=stdin)


def test_valid_directory() -> None:
    result = run("-f", str(DATA / "valid"))
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    # pod, service, rc, endpoints, kubelet manifest, minion+binding+bound pods, 2 listed pods
    assert result.stdout == "10 objects valid\n"


def test_invalid_directory_reports_every_error() -> None:
    result = run("-f", str(DATA / "invalid"))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    pods = str(DATA / "invalid" / "pods.yaml")
    broken = str(DATA / "invalid" / "broken.json")
    assert lines[0].startswith(f"{broken}: JSON: ")
    assert lines[1:] == [
        f"{pods}: Pod/bad: desiredState.manifest.containers[0].name: invalid value 'Web_1': "
        "must be a DNS label (lowercase letters, digits and '-', starting and ending "
        "alphanumeric, ≤ 63)",
        f"{pods}: Pod/bad: desiredState.manifest.containers[0].image: required value",
        f"{pods}: Pod/bad: desiredState.manifest.containers[0].ports[0].containerPort: "
        "required value",
    ]
    assert result.stdout == "4 errors in 2 of 3 objects\n"


def test_single_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "pod.json"
    path.write_text(json.dumps(GOOD_POD))
    result = run("-f", str(path))
    assert (result.exit_code, result.stdout) == (0, "1 object valid\n")


def test_repeated_filenames_and_stdin(tmp_path: Path) -> None:
    path = tmp_path / "pod.json"
    path.write_text(json.dumps(GOOD_POD))
    result = run("-f", str(path), "--filename", "-", stdin=json.dumps(GOOD_POD))
    assert (result.exit_code, result.stdout) == (0, "2 objects valid\n")


def test_stdin_errors_are_named_stdin() -> None:
    result = run("-f", "-", stdin="kind: Pod\nid: p\n")
    assert result.exit_code == 1
    assert result.stderr == "<stdin>: Pod/p: desiredState.manifest.version: required value\n"


def test_missing_file_is_one_line() -> None:
    result = run("-f", "/nonexistent/pods.yaml")
    assert result.exit_code == 1
    assert result.stderr == "/nonexistent/pods.yaml: no such file or directory\n"


def test_directory_skips_hidden_files_and_subdirectories(tmp_path: Path) -> None:
    (tmp_path / ".hidden.json").write_text("garbage")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "bad.json").write_text("garbage")
    (tmp_path / "b.json").write_text(json.dumps(GOOD_POD | {"id": ""}))
    (tmp_path / "a.json").write_text(json.dumps(GOOD_POD))
    result = run("-f", str(tmp_path))
    assert result.exit_code == 1
    assert result.stderr == f"{tmp_path / 'b.json'}: Pod/#1: id: required value\n"
    assert result.stdout == "1 error in 1 of 2 objects\n"


def test_kindless_manifest_is_validated_as_a_manifest(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("version: v1beta1\nid: m\ncontainers:\n- name: C\n")
    result = run("-f", str(tmp_path / "m.yaml"))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{tmp_path / 'm.yaml'}: ContainerManifest/m: containers[0].name: invalid value "
        "'C': must be a DNS label (lowercase letters, digits and '-', starting and ending "
        "alphanumeric, ≤ 63)",
        f"{tmp_path / 'm.yaml'}: ContainerManifest/m: containers[0].image: required value",
    ]


def test_object_without_kind_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"id": "x"}')
    result = run("-f", str(tmp_path / "x.json"))
    assert result.exit_code == 1
    assert result.stderr == f"{tmp_path / 'x.json'}: ?/x: kind: required value: the object's kind\n"


def test_privileged_needs_the_flag(tmp_path: Path) -> None:
    pod = json.loads(json.dumps(GOOD_POD))
    pod["desiredState"]["manifest"]["containers"][0]["privileged"] = True
    (tmp_path / "p.json").write_text(json.dumps(pod))
    assert run("-f", str(tmp_path / "p.json")).exit_code == 1
    assert run("-f", str(tmp_path / "p.json"), "--allow-privileged").exit_code == 0


def test_filename_is_required() -> None:
    result = CliRunner().invoke(main, ["validate"], prog_name="kubecore")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: Missing option '-f' / '--filename' (see 'kubecore validate --help')\n"
    )


@pytest.mark.parametrize(
    "content",
    [b"\x00\xff" * 100, b"[" * 100000, b"a: &a [*a]", b"!!python/object:os.system x",
     b'{"kind":"PodList","items":5}', b"- 1\n- 2\n", b""],
)
def test_bad_input_never_gives_a_traceback(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad"
    path.write_bytes(content)
    result = run("-f", str(path))
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_arbitrary_input_exits_cleanly(content: bytes) -> None:
    result = run("-f", "-", stdin=content)
    assert result.exit_code in (0, 1)
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "--bogus"], "No such option '--bogus' (see 'kubecore create --help')"),
        (["bogus"], "No such command 'bogus' (see 'kubecore --help')"),
        (["resize", "web"], "Missing argument 'REPLICAS' (see 'kubecore resize --help')"),
        (["get", "pods", "-o", "xml"], "Invalid value for '-o' / '--output'"),
    ],
)
def test_usage_mistakes_are_one_line_and_status_1(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args, prog_name="kubecore")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {message}")
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""


def test_help_and_version_still_exit_0() -> None:
    assert CliRunner().invoke(main, ["--help"]).exit_code == 0
    version = CliRunner().invoke(main, ["--version"], prog_name="kubecore")
    assert (version.exit_code, version.stdout.startswith("kubecore, version")) == (0, True)
