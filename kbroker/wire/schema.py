"""Message schemas as data: the parser for ``protocol/*.schema`` files.

A schema file declares one API: its key, the version range we implement, the first
flexible version, and the request and response fields, each with the versions it
exists in. Nesting is by indentation (two spaces), so a file reads like the message::

    api Produce key=0 implemented=3-11 flexible=9+

    request
    transactional_id   ?string   3+
    acks               int16
    topic_data         []
      name             string

A field line is ``name type [versions] [option=value ...]``. Types are the primitives
below, ``[]`` (array of the indented struct), ``[]int32`` (array of a primitive) and
``{}`` (one nested struct); a leading ``?`` makes the field nullable in all its versions,
``nullable=V+`` in only some. Options: ``tag=N`` (a tagged field), ``default=X``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kbroker.wire.primitives import ZERO_UUID

PRIMITIVES = frozenset(
    "bool int8 int16 uint16 int32 uint32 int64 float64 string bytes records uuid".split()
)
FIXED_FORMATS = {
    "bool": "?",
    "int8": "b",
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "float64": "d",
    "uuid": "16s",
}

_VERSIONS = re.compile(r"^(\d+)(\+|-(\d+))?$")


class SchemaError(ValueError):
    """A schema file is malformed; the message names the file and line."""


@dataclass(frozen=True)
class Versions:
    """An inclusive version range; ``high`` is None for open-ended ranges (``N+``)."""

    low: int
    high: int | None = None

    @classmethod
    def parse(cls, text: str) -> Versions:
        if text == "none":
            return cls(1 << 30, 0)
        match = _VERSIONS.match(text)
        if not match:
            raise SchemaError(f"bad version range {text!r}")
        low = int(match.group(1))
        if match.group(2) is None:
            return cls(low, low)
        if match.group(2) == "+":
            return cls(low, None)
        return cls(low, int(match.group(3)))

    def __contains__(self, version: int) -> bool:
        return self.low <= version and (self.high is None or version <= self.high)


@dataclass(frozen=True)
class Field:
    """One field of a struct. ``type`` is a primitive name, ``"struct"`` or ``"array"``.

    For arrays, ``element`` is the primitive element type, or None when the elements
    are structs made of ``fields``.
    """

    name: str
    type: str
    versions: Versions
    nullable: Versions | None = None
    tag: int | None = None
    default: object = None
    element: str | None = None
    fields: tuple[Field, ...] = ()

    def is_nullable(self, version: int) -> bool:
        return self.nullable is not None and version in self.nullable

    def make_default(self):
        """A fresh default value (new list/dict each call, so decoded messages never share)."""
        if self.default is not _UNSET:
            return self.default
        if self.nullable is not None and self.nullable.low <= self.versions.low:
            return None
        if self.type == "array":
            return []
        if self.type == "struct":
            return {f.name: f.make_default() for f in self.fields}
        return _TYPE_DEFAULTS[self.type]


_UNSET = object()
_TYPE_DEFAULTS = {
    "bool": False,
    "int8": 0,
    "int16": 0,
    "uint16": 0,
    "int32": 0,
    "uint32": 0,
    "int64": 0,
    "float64": 0.0,
    "string": "",
    "bytes": b"",
    "records": b"",
    "uuid": ZERO_UUID,
}


@dataclass(frozen=True)
class ApiSchema:
    """One API: the request and response field lists and the versions we serve."""

    key: int
    name: str
    implemented: Versions
    flexible: Versions
    request: tuple[Field, ...]
    response: tuple[Field, ...]

    @property
    def min_version(self) -> int:
        return self.implemented.low

    @property
    def max_version(self) -> int:
        assert self.implemented.high is not None
        return self.implemented.high

    def is_flexible(self, version: int) -> bool:
        return version in self.flexible


def _parse_default(text: str):
    if text == "null":
        return None
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        return text.strip('"')


def _parse_field(tokens: list[str], children: tuple[Field, ...]) -> Field:
    name, type_text, *rest = tokens
    versions = Versions(0)
    options: dict[str, str] = {}
    for token in rest:
        if "=" in token:
            key, _, value = token.partition("=")
            options[key] = value
        else:
            versions = Versions.parse(token)
    nullable = None
    if type_text.startswith("?"):
        type_text = type_text[1:]
        nullable = versions
    if "nullable" in options:
        nullable = Versions.parse(options.pop("nullable"))
    element = None
    if type_text == "[]":
        kind = "array"
    elif type_text.startswith("[]"):
        kind, element = "array", type_text[2:]
        if element not in PRIMITIVES:
            raise SchemaError(f"unknown array element type {element!r}")
    elif type_text == "{}":
        kind = "struct"
    elif type_text in PRIMITIVES:
        kind = type_text
    else:
        raise SchemaError(f"unknown type {type_text!r}")
    if (kind == "struct" or (kind == "array" and element is None)) != bool(children):
        raise SchemaError(f"field {name!r}: struct fields need indented children, others none")
    tag = int(options.pop("tag")) if "tag" in options else None
    default = _parse_default(options.pop("default")) if "default" in options else _UNSET
    if options:
        raise SchemaError(f"field {name!r}: unknown options {sorted(options)}")
    return Field(name, kind, versions, nullable, tag, default, element, children)


def _parse_block(lines: list[tuple[int, int, list[str]]], start: int, indent: int):
    """Parse sibling field lines at ``indent`` from ``start``; return (fields, next index)."""
    fields: list[Field] = []
    index = start
    while index < len(lines):
        lineno, depth, tokens = lines[index]
        if depth < indent:
            break
        if depth > indent:
            raise SchemaError(f"line {lineno}: unexpected indentation")
        children, index = _parse_block(lines, index + 1, indent + 2)
        try:
            fields.append(_parse_field(tokens, tuple(children)))
        except (SchemaError, ValueError) as exc:
            raise SchemaError(f"line {lineno}: {exc}") from None
    return fields, index


def parse_schema(text: str, source: str = "<schema>") -> ApiSchema:
    """Parse one schema file's text into an ApiSchema."""
    header: dict[str, str] | None = None
    name = ""
    sections: dict[str, list[tuple[int, int, list[str]]]] = {"request": [], "response": []}
    current: list | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].rstrip()
        if not line:
            continue
        tokens = line.split()
        if tokens[0] == "api" and header is None:
            name = tokens[1]
            header = dict(token.split("=", 1) for token in tokens[2:])
        elif tokens[0] in sections and len(tokens) == 1:
            current = sections[tokens[0]]
        elif current is None:
            raise SchemaError(f"{source}:{lineno}: field outside request/response")
        else:
            current.append((lineno, len(line) - len(line.lstrip()), tokens))
    if header is None:
        raise SchemaError(f"{source}: missing 'api' line")
    parsed = {}
    for section, lines in sections.items():
        try:
            fields, end = _parse_block(lines, 0, 0)
        except SchemaError as exc:
            raise SchemaError(f"{source}: {exc}") from None
        if end != len(lines):
            raise SchemaError(f"{source}: bad indentation near line {lines[end][0]}")
        parsed[section] = tuple(fields)
    return ApiSchema(
        key=int(header["key"]),
        name=name,
        implemented=Versions.parse(header["implemented"]),
        flexible=Versions.parse(header.get("flexible", "none")),
        request=parsed["request"],
        response=parsed["response"],
    )


def load_schemas(directory: Path) -> dict[int, ApiSchema]:
    """Load every ``*.schema`` file in ``directory``, keyed by API key."""
    schemas: dict[int, ApiSchema] = {}
    for path in sorted(directory.glob("*.schema")):
        api = parse_schema(path.read_text(), str(path))
        if api.key in schemas:
            raise SchemaError(f"{path}: API key {api.key} declared twice")
        schemas[api.key] = api
    return schemas
