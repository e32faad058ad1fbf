"""The reference codec: a plain interpreter over the schema, slow and obviously right.

It exists to keep the compiled codec honest: the parity tests encode and decode every
(API, version) with both and demand identical results.
"""

from __future__ import annotations

from kbroker.wire import types
from kbroker.wire.primitives import read_uvarint, write_uvarint
from kbroker.wire.schema import Field


def _present(field: Field, version: int, flexible: bool) -> bool:
    return version in field.versions and (field.tag is None or flexible)


def decode_struct(fields: tuple[Field, ...], buf, pos: int, version: int, flexible: bool):
    """Decode a struct of ``fields`` at ``pos``; return (dict, new position)."""
    obj = {}
    for field in fields:
        if field.tag is None and version in field.versions:
            obj[field.name], pos = decode_value(field, buf, pos, version, flexible)
        else:
            obj[field.name] = field.make_default()
    if flexible:
        by_tag = {f.tag: f for f in fields if f.tag is not None and version in f.versions}
        count, pos = read_uvarint(buf, pos)
        for _ in range(count):
            tag, pos = read_uvarint(buf, pos)
            size, pos = read_uvarint(buf, pos)
            if tag in by_tag:
                field = by_tag[tag]
                obj[field.name], _ = decode_value(field, buf, pos, version, flexible)
            pos += size
    return obj, pos


def decode_value(field: Field, buf, pos: int, version: int, flexible: bool):
    if field.type == "struct":
        return decode_struct(field.fields, buf, pos, version, flexible)
    if field.type != "array":
        return types.primitive_reader(field.type, flexible)(buf, pos)
    read_length = types.read_compact_array_length if flexible else types.read_array_length
    size, pos = read_length(buf, pos)
    if size < 0:
        return None, pos
    items = []
    for _ in range(size):
        if field.element is None:
            item, pos = decode_struct(field.fields, buf, pos, version, flexible)
        else:
            item, pos = types.primitive_reader(field.element, flexible)(buf, pos)
        items.append(item)
    return items, pos


def encode_struct(fields: tuple[Field, ...], obj: dict, out, version: int, flexible: bool):
    """Append the encoding of ``obj`` (missing keys take their defaults) to ``out``."""
    tagged = []
    for field in fields:
        if not _present(field, version, flexible):
            continue
        value = obj.get(field.name, field.make_default())
        if field.tag is None:
            encode_value(field, out, value, version, flexible)
        elif value != field.make_default():
            tagged.append((field.tag, field, value))
    if flexible:
        write_uvarint(out, len(tagged))
        for tag, field, value in sorted(tagged, key=lambda item: item[0]):
            body = types.Writer()
            encode_value(field, body, value, version, flexible)
            write_uvarint(out, tag)
            write_uvarint(out, len(body))
            out += body


def encode_value(field: Field, out, value, version: int, flexible: bool) -> None:
    if field.type == "struct":
        encode_struct(field.fields, value, out, version, flexible)
    elif field.type != "array":
        types.primitive_writer(field.type, flexible)(out, value)
    elif value is None:
        (types.write_compact_array_length if flexible else types.write_array_length)(out, -1)
    else:
        (types.write_compact_array_length if flexible else types.write_array_length)(
            out, len(value)
        )
        for item in value:
            if field.element is None:
                encode_struct(field.fields, item, out, version, flexible)
            else:
                types.primitive_writer(field.element, flexible)(out, item)
