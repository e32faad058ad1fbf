"""The compiled codec: each (struct, version) becomes generated Python source.

Generated decoders unpack runs of fixed-width fields with one ``struct`` call and call
small helpers for the rest; encoders do the reverse. The result is several times faster
than walking the schema per message (see the reference codec, which defines the
semantics and is checked against this one field for field).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from kbroker.wire import types
from kbroker.wire.primitives import DecodeError
from kbroker.wire.schema import FIXED_FORMATS, Field

Decoder = Callable[[object, int], tuple[dict, int]]
Encoder = Callable[[types.Writer, dict], None]


class _Builder:
    """Accumulates generated functions and the constants they refer to."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.namespace: dict[str, object] = {
            "DecodeError": DecodeError,
            "read_uvarint": types.read_uvarint,
            "write_uvarint": types.write_uvarint,
            "write_tagged_fields": types.write_tagged_fields,
            "Writer": types.Writer,
        }
        self._names: dict[object, str] = {}
        self._cache: dict[tuple, str] = {}

    def constant(self, value: object) -> str:
        """A namespace name bound to ``value`` (shared by identity)."""
        key = id(value)
        if key not in self._names:
            name = f"k{len(self._names)}"
            self._names[key] = name
            self.namespace[name] = value
        return self._names[key]

    def emit(self, lines: list[str]) -> None:
        self.lines.extend(lines)
        self.lines.append("")

    # -- decoding -------------------------------------------------------------------
    def struct_decoder(self, fields: tuple[Field, ...], version: int, flexible: bool) -> str:
        key = ("d", id(fields), version, flexible)
        if key in self._cache:
            return self._cache[key]
        name = f"d{len(self._cache)}"
        self._cache[key] = name
        body = ["o = {}"]
        run: list[Field] = []

        def flush_run() -> None:
            if not run:
                return
            packer = struct.Struct(">" + "".join(FIXED_FORMATS[f.type] for f in run))
            targets = ", ".join(f"o[{f.name!r}]" for f in run)
            body.append(f"{targets}, = {self.constant(packer)}.unpack_from(buf, pos)")
            body.append(f"pos += {packer.size}")
            run.clear()

        tagged = []
        for field in fields:
            if version not in field.versions or field.tag is not None:
                flush_run()
                if field.tag is not None and flexible and version in field.versions:
                    tagged.append(field)
                body.append(f"o[{field.name!r}] = {self._default_expr(field)}")
            elif field.type in FIXED_FORMATS:
                run.append(field)
            else:
                flush_run()
                reader = self.value_reader(field, version, flexible)
                body.append(f"o[{field.name!r}], pos = {reader}(buf, pos)")
        flush_run()
        if flexible:
            body.append("n, pos = read_uvarint(buf, pos)")
            body.append("for _ in range(n):")
            body.append("    t, pos = read_uvarint(buf, pos)")
            body.append("    size, pos = read_uvarint(buf, pos)")
            for field in tagged:
                reader = self.value_reader(field, version, flexible)
                body.append(f"    if t == {field.tag}:")
                body.append(f"        o[{field.name!r}], _ = {reader}(buf, pos)")
            body.append("    pos += size")
        body.append("return o, pos")
        self.emit([f"def {name}(buf, pos):"] + ["    " + line for line in body])
        return name

    def value_reader(self, field: Field, version: int, flexible: bool) -> str:
        if field.type == "struct":
            return self.struct_decoder(field.fields, version, flexible)
        if field.type != "array":
            return self.constant(types.primitive_reader(field.type, flexible))
        key = ("ra", id(field), version, flexible)
        if key in self._cache:
            return self._cache[key]
        name = f"ra{len(self._cache)}"
        self._cache[key] = name
        if field.element is None:
            item = self.struct_decoder(field.fields, version, flexible)
        else:
            item = self.constant(types.primitive_reader(field.element, flexible))
        length = types.read_compact_array_length if flexible else types.read_array_length
        self.emit(
            [
                f"def {name}(buf, pos):",
                f"    n, pos = {self.constant(length)}(buf, pos)",
                "    if n < 0:",
                "        return None, pos",
                "    items = []",
                "    append = items.append",
                "    for _ in range(n):",
                f"        v, pos = {item}(buf, pos)",
                "        append(v)",
                "    return items, pos",
            ]
        )
        return name

    def _default_expr(self, field: Field, fresh: bool = True) -> str:
        """The source of a field's default: a new list or dict per message when decoding
        (callers may change what they decoded); one shared value when encoding, which
        only reads it."""
        default = field.make_default()
        if isinstance(default, (list, dict)):
            if not fresh:
                return self.constant(default)
            return f"{self.constant(field.make_default)}()"
        return self.constant(default) if isinstance(default, bytes) else repr(default)

    # -- encoding -------------------------------------------------------------------
    def struct_encoder(self, fields: tuple[Field, ...], version: int, flexible: bool) -> str:
        key = ("e", id(fields), version, flexible)
        if key in self._cache:
            return self._cache[key]
        name = f"e{len(self._cache)}"
        self._cache[key] = name
        body: list[str] = ["get = o.get"]
        run: list[Field] = []

        def flush_run() -> None:
            if not run:
                return
            packer = struct.Struct(">" + "".join(FIXED_FORMATS[f.type] for f in run))
            args = ", ".join(f"get({f.name!r}, {self._default_expr(f, False)})" for f in run)
            body.append(f"b += {self.constant(packer)}.pack({args})")
            run.clear()

        tagged = []
        for field in fields:
            if version not in field.versions:
                continue
            if field.tag is not None:
                if flexible:
                    tagged.append(field)
            elif field.type in FIXED_FORMATS:
                run.append(field)
            else:
                flush_run()
                writer = self.value_writer(field, version, flexible)
                body.append(f"{writer}(b, get({field.name!r}, {self._default_expr(field, False)}))")
        flush_run()
        if flexible and not tagged:
            body.append("b.append(0)")
        elif flexible:
            body.append("tagged = []")
            for field in sorted(tagged, key=lambda f: f.tag):
                default = self._default_expr(field, False)
                writer = self.value_writer(field, version, flexible)
                body.append(f"v = get({field.name!r}, {default})")
                body.append(f"if v != {default}:")
                body.append(f"    tagged.append(({field.tag}, {writer}, v))")
            body.append("write_tagged_fields(b, tagged)")
        self.emit([f"def {name}(b, o):"] + ["    " + line for line in body])
        return name

    def value_writer(self, field: Field, version: int, flexible: bool) -> str:
        if field.type == "struct":
            return self.struct_encoder(field.fields, version, flexible)
        if field.type != "array":
            return self.constant(types.primitive_writer(field.type, flexible))
        key = ("wa", id(field), version, flexible)
        if key in self._cache:
            return self._cache[key]
        name = f"wa{len(self._cache)}"
        self._cache[key] = name
        if field.element is None:
            item = self.struct_encoder(field.fields, version, flexible)
        else:
            item = self.constant(types.primitive_writer(field.element, flexible))
        length = self.constant(
            types.write_compact_array_length if flexible else types.write_array_length
        )
        self.emit(
            [
                f"def {name}(b, v):",
                "    if v is None:",
                f"        {length}(b, -1)",
                "        return",
                f"    {length}(b, len(v))",
                "    for x in v:",
                f"        {item}(b, x)",
            ]
        )
        return name

    def build(self) -> dict[str, object]:
        code = compile("\n".join(self.lines), "<kbroker.wire.compiled>", "exec")
        exec(code, self.namespace)
        return self.namespace


def compile_struct(
    fields: tuple[Field, ...], version: int, flexible: bool
) -> tuple[Decoder, Encoder]:
    """Compile one top-level struct at one version into (decoder, encoder)."""
    builder = _Builder()
    decoder = builder.struct_decoder(fields, version, flexible)
    encoder = builder.struct_encoder(fields, version, flexible)
    namespace = builder.build()
    return namespace[decoder], namespace[encoder]
