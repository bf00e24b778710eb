"""MkDocs hooks: the home page is README.md (its links made relative to docs/), and the settings reference is
generated from the config classes themselves (each field's type, default and the comment that documents it),
so neither is ever copied by hand."""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path

from mkdocs.structure.files import File, Files
from pydantic import BaseModel

from sae_models.config import no_result_fields, parts_shaped

_FIELD = re.compile(r"^    (\w+)\s*:\s*(?P<rest>.*)$")
NO_RESULT = " (no result depends on it: changing it reruns nothing)"


def _comments(model: type[BaseModel]) -> dict[str, str]:
    """Field name -> the comment written beside it (and on the comment lines right under it), in the class or
    the config class it extends."""
    out: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if cls is not model and (not issubclass(cls, BaseModel) or cls.__module__.startswith("pydantic")):
            continue
        out |= {name: text for name, text in _own_comments(cls).items() if text}
    return out


def _own_comments(cls: type) -> dict[str, str]:
    out: dict[str, str] = {}
    current = None
    for line in inspect.getsource(cls).splitlines():
        match = _FIELD.match(line)
        if match and not line.lstrip().startswith("#"):
            current = match.group(1)
            _, _, comment = match.group("rest").partition("  # ")
            out[current] = comment.strip()
        elif current and line.strip().startswith("#") and line.startswith("    "):
            out[current] = (out[current] + " " + line.strip().lstrip("#").strip()).strip()
        elif line.strip() and not line.startswith("        "):
            current = None
    return out


def _model_of(annotation) -> type[BaseModel] | None:
    for arg in (annotation, *typing.get_args(annotation)):
        if inspect.isclass(arg) and issubclass(arg, BaseModel):
            return arg
    return None


def _type_name(annotation) -> str:
    return re.sub(r"typing\.|<class '([^']*)'>", r"\1", str(annotation)).replace("NoneType", "None")


def _default(field) -> str:
    if field.default_factory is not None:
        try:
            return repr(field.default_factory())
        except TypeError:
            return "(computed)"
    return "required" if field.is_required() else repr(field.default)


def _section(prefix: str, model: type[BaseModel], out: list[str], array: bool = False) -> None:
    """One section's table; ``array``: a TOML array of tables (``[[models]]``)."""
    doc = inspect.getdoc(model) or ""
    title = f"## `[[{prefix}]]`" if array else f"## `[{prefix}]`"
    out += [title, "", f"`{model.__module__}.{model.__qualname__}`", "", doc, "",
            "| setting | type | default | what it does |", "|---|---|---|---|"]
    comments, nested = _comments(model), []
    for name, field in model.model_fields.items():
        sub = _model_of(field.annotation)
        if sub is not None and sub is not model:
            nested.append((f"{prefix}.{name}", sub))
            continue
        text = field.description or comments.get(name, "")
        if name in no_result_fields(model):
            text += NO_RESULT if text else ""
        if name in parts_shaped(model):
            text += f" (shapes: {', '.join(parts_shaped(model)[name])})"
        cells = [f"`{name}`", f"`{_type_name(field.annotation)}`", f"`{_default(field)}`", text]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    out.append("")
    for sub_prefix, sub in nested:
        _section(sub_prefix, sub, out)


def settings_reference() -> str:
    from assets.lakehouse.config import Settings

    out = ["# Settings reference", "",
           "Every section of `lake.toml` and every setting in it, generated from the config classes when the site "
           "is built. [Configuration](configuration.md) explains how they fit together.", ""]
    for name, field in Settings.model_fields.items():
        model = _model_of(field.annotation)
        if model is not None:  # a list of tables is an array of tables in TOML: [[models]]
            _section(name, model, out, array=typing.get_origin(field.annotation) is list)
    return "\n".join(out) + "\n"


def home() -> str:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    return readme.replace("](docs/", "](")


def on_files(files: Files, config) -> Files:
    files.append(File.generated(config, "index.md", content=home()))
    files.append(File.generated(config, "settings.md", content=settings_reference()))
    return files
