"""Arrow schemas derived from typed rows: an evaluation declares its rows and summary as dataclasses, and the
table that stores them gets its column types from the annotations, the same in every partition.

``int`` is int64, ``float`` float64, ``str`` string, ``bool`` bool, ``list[X]`` a list of X; ``X | None``
is nullable. A field can
pin a narrower type with ``field(metadata={"arrow": pa.int32()})``. A field whose type is a dataclass contributes its
own fields in its place, each name after the field's ``field(metadata={"prefix": ...})`` when it has one.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable

import pyarrow as pa

_SCALARS = {int: pa.int64(), float: pa.float64(), str: pa.string(), bool: pa.bool_()}


def _arrow_type(hint) -> tuple[pa.DataType, bool]:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return _arrow_type(inner)[0], True
    if typing.get_origin(hint) is list:
        return pa.list_(_SCALARS[args[0]]), False
    return _SCALARS[hint], False


def schema_of(*row_types: type) -> pa.Schema:
    """The Arrow schema of rows made by concatenating the fields of ``row_types`` in order; a field whose type
    is itself a dataclass (the SAE's identity, the judge's usage) contributes its own fields in its place."""
    fields = []
    for row_type in row_types:
        hints = typing.get_type_hints(row_type)
        for f in dataclasses.fields(row_type):
            if dataclasses.is_dataclass(hints[f.name]):
                prefix = f.metadata.get("prefix", "")
                fields.extend(inner.with_name(prefix + inner.name) for inner in schema_of(hints[f.name]))
                continue
            dtype, nullable = _arrow_type(hints[f.name])
            fields.append(pa.field(f.name, f.metadata.get("arrow", dtype), nullable=nullable))
    names = [f.name for f in fields]
    if len(set(names)) < len(names):
        raise TypeError(f"{', '.join(t.__name__ for t in row_types)}: a column name repeats in {names}")
    return pa.schema(fields)


def to_table(rows: Iterable, schema: pa.Schema) -> pa.Table:
    """Dataclass instances (or dicts) as a table of exactly ``schema``."""
    return pa.Table.from_pylist([r if isinstance(r, dict) else columns(r) for r in rows], schema=schema)


def columns(row) -> dict:
    """A dataclass row as its table's columns: its fields, a dataclass field's own fields in its place (the
    lists are not copied: ``dataclasses.asdict`` deep-copies every list, slow on big tables)."""
    out = {}
    for f in dataclasses.fields(row):
        value = getattr(row, f.name)
        if dataclasses.is_dataclass(value):
            prefix = f.metadata.get("prefix", "")
            out.update({prefix + name: inner for name, inner in columns(value).items()})
        else:
            out[f.name] = value
    return out
