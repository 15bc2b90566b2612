"""``python -m bench NAME [--quick]``: run ``bench.NAME`` and record its measures.

Writes ``bench/results/NAME.json``::

    {"bench": NAME,
     "measures": [{"name", "unit", "kubecore", "baseline", "baseline_name", "ratio",
                   "target", "met"}, ...],
     "machine": {...}, "when": ISO timestamp, "quick": bool}

and prints the same as a table. A benchmark module may define ``machine_details()``
returning more facts for ``machine`` (peer versions and configuration). The exit
status is 0 when the run completed (missed targets are reported, not failures).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import Measure

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What the numbers depend on: CPUs, Python, kernel."""
    return {
        "cpu_count": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "kernel": platform.release(),
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    return str(value)


def table(measures: Sequence[Measure]) -> str:
    """The measures as a plain-text table."""
    header = ["measure", "unit", "kubecore", "baseline", "vs", "ratio", "target", "met"]
    rows = [header] + [
        [m.name, m.unit, _fmt(m.kubecore), _fmt(m.baseline), m.baseline_name,
         _fmt(m.ratio), _fmt(m.target), _fmt(m.met)]
        for m in measures
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) if i in (0, 1, 4) else cell.rjust(width)
                       for i, (cell, width) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("name", metavar="NAME", help="benchmark module under bench/ (e.g. proxy)")
    parser.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    args = parser.parse_args(argv)
    try:
        module = importlib.import_module(f"bench.{args.name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"bench.{args.name}":
            parser.error(f"no benchmark named {args.name!r}")
        raise
    details = getattr(module, "machine_details", None)
    started = datetime.now(UTC)
    measures: list[Measure] = module.run(args.quick)
    result = {
        "bench": args.name,
        "measures": [measure.as_dict() for measure in measures],
        "machine": {**machine(), **(details() if callable(details) else {})},
        "when": started.isoformat(timespec="seconds"),
        "quick": args.quick,
    }
    RESULTS.mkdir(exist_ok=True)
    target = RESULTS / f"{args.name}.json"
    scratch = RESULTS / f"{args.name}.tmp"
    scratch.write_text(json.dumps(result, indent=2) + "\n")
    scratch.replace(target)
    shown = target.relative_to(Path.cwd()) if target.is_relative_to(Path.cwd()) else target
    print(table(measures))
    print(f"\nwritten to {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
