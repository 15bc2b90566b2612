"""``kubecore config``: check a configuration and print it with every default filled in,
or print the reference of every key the installed plugins declare."""

from __future__ import annotations

import json
from typing import Any

import click
import tomli_w
from pydantic.fields import FieldInfo

from kubecore import kernel
from kubecore.cli.options import config_options, raw_config
from kubecore.config import KERNEL_SECTION, ConfigSection
from kubecore.plugins import declared_sections, installed_manager


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return "(computed)"
    value = field.get_default()
    return "(unset)" if value is None else f"`{json.dumps(value, default=str)}`"


def _type_name(field: FieldInfo) -> str:
    annotation = field.annotation
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    return text.replace("typing.", "").replace("pathlib.", "").replace("|", "\\|")


def reference(sections: list[tuple[str, ConfigSection]]) -> str:
    """Markdown: one table per section with each key's type, default and description."""
    out = ["# kubecore configuration reference", ""]
    for owner, section in sections:
        out += [f"## [{section.name}]", "", f"{section.doc} (from `{owner}`)".strip(), "",
                "| key | type | default | description |", "|---|---|---|---|"]
        for name, field in section.model.model_fields.items():
            out.append(f"| `{name}` | `{_type_name(field)}` | {_default(field)} |"
                       f" {field.description or ''} |")
        out.append("")
    return "\n".join(out)


@click.command("config")
@config_options
@click.option("--reference", "reference_", is_flag=True,
              help="Print every section and key the installed plugins declare, as Markdown.")
def config(reference_: bool = False, **options: Any) -> None:
    """Validate the configuration and print the effective settings as TOML."""
    if reference_:
        # Sorted, so the generated document (docs/configuration.md) does not depend on
        # the order in which plugins happen to be discovered.
        declared = sorted(declared_sections(installed_manager()), key=lambda item: item[1].name)
        sections = [("kubecore", KERNEL_SECTION), *declared]
        click.echo(reference(sections))
        return
    ctx = kernel.prepare(raw_config(**options))
    document = {
        name: section.model_dump(mode="json", exclude_none=True)
        for name, section in ctx.settings.items()
    }
    click.echo(tomli_w.dumps(document), nl=False)
