"""Broker and topic configuration under Kafka's own property names and defaults.

A ``server.properties`` written for Apache Kafka starts kbroker: the keys listed here
are honoured, any other key is reported once by name and ignored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger("kbroker.config")


@dataclass(frozen=True)
class Setting:
    """One configuration key: its Kafka type name and default (as text, or None)."""

    name: str
    type: str
    default: str | None


def _settings(*rows: tuple[str, str, str | None]) -> dict[str, Setting]:
    return {name: Setting(name, kind, default) for name, kind, default in rows}


BROKER_SETTINGS = _settings(
    ("node.id", "int", "1"),
    ("broker.id", "int", None),
    ("listeners", "list", "PLAINTEXT://127.0.0.1:9092"),
    ("advertised.listeners", "list", None),
    ("log.dirs", "list", None),
    ("log.dir", "string", "./kbroker-data"),
    ("num.partitions", "int", "1"),
    ("default.replication.factor", "int", "1"),
    ("auto.create.topics.enable", "boolean", "true"),
    ("delete.topic.enable", "boolean", "true"),
    ("log.segment.bytes", "int", "1073741824"),
    ("log.roll.ms", "long", None),
    ("log.roll.hours", "int", "168"),
    ("log.index.interval.bytes", "int", "4096"),
    ("log.index.size.max.bytes", "int", "10485760"),
    ("log.retention.ms", "long", None),
    ("log.retention.minutes", "int", None),
    ("log.retention.hours", "int", "168"),
    ("log.retention.bytes", "long", "-1"),
    ("log.cleanup.policy", "list", "delete"),
    ("log.flush.interval.messages", "long", "9223372036854775807"),
    ("log.flush.interval.ms", "long", None),
    ("log.flush.offset.checkpoint.interval.ms", "int", "60000"),
    ("log.retention.check.interval.ms", "long", "300000"),
    ("log.segment.delete.delay.ms", "long", "60000"),
    ("log.cleaner.enable", "boolean", "true"),
    ("log.cleaner.threads", "int", "1"),
    ("log.cleaner.backoff.ms", "long", "15000"),
    ("log.cleaner.delete.retention.ms", "long", "86400000"),
    ("log.cleaner.min.cleanable.ratio", "double", "0.5"),
    ("log.cleaner.min.compaction.lag.ms", "long", "0"),
    ("log.cleaner.max.compaction.lag.ms", "long", "9223372036854775807"),
    ("log.message.timestamp.type", "string", "CreateTime"),
    ("compression.type", "string", "producer"),
    ("message.max.bytes", "int", "1048588"),
    ("min.insync.replicas", "int", "1"),
    ("socket.request.max.bytes", "int", "104857600"),
    ("offsets.topic.num.partitions", "int", "50"),
    ("offsets.topic.replication.factor", "short", "3"),
    ("offsets.topic.segment.bytes", "int", "104857600"),
    ("offsets.retention.minutes", "int", "10080"),
    ("offsets.retention.check.interval.ms", "long", "600000"),
    ("offset.metadata.max.bytes", "int", "4096"),
    ("group.min.session.timeout.ms", "int", "6000"),
    ("group.max.session.timeout.ms", "int", "1800000"),
    # Kafka's built-in default is 3000; 0 is what Kafka's shipped server.properties sets.
    ("group.initial.rebalance.delay.ms", "int", "0"),
    ("group.max.size", "int", "2147483647"),
    ("transaction.state.log.num.partitions", "int", "50"),
    ("transaction.state.log.replication.factor", "short", "3"),
    ("transaction.state.log.min.isr", "int", "2"),
    ("transaction.state.log.segment.bytes", "int", "104857600"),
    ("transaction.max.timeout.ms", "int", "900000"),
    ("transactional.id.expiration.ms", "int", "604800000"),
    ("transaction.abort.timed.out.transaction.cleanup.interval.ms", "int", "10000"),
    ("transaction.remove.expired.transaction.cleanup.interval.ms", "int", "3600000"),
    ("cluster.id", "string", None),
    ("zookeeper.connect", "string", None),
    ("zookeeper.session.timeout.ms", "int", "18000"),
    ("replica.lag.time.max.ms", "long", "30000"),
    ("replica.fetch.wait.max.ms", "int", "500"),
    ("replica.fetch.min.bytes", "int", "1"),
    ("replica.fetch.max.bytes", "int", "1048576"),
    ("replica.fetch.response.max.bytes", "int", "10485760"),
    ("replica.fetch.backoff.ms", "int", "1000"),
    ("max.incremental.fetch.session.cache.slots", "int", "1000"),
    ("min.incremental.fetch.session.eviction.ms", "int", "120000"),
    ("unclean.leader.election.enable", "boolean", "false"),
    ("controlled.shutdown.enable", "boolean", "true"),
    ("auto.leader.rebalance.enable", "boolean", "true"),
    ("leader.imbalance.check.interval.seconds", "long", "300"),
    ("leader.imbalance.per.broker.percentage", "int", "10"),
)

# Topic-level keys: (type, broker key whose value is the default).
TOPIC_SETTINGS: dict[str, tuple[str, str]] = {
    "cleanup.policy": ("list", "log.cleanup.policy"),
    "compression.type": ("string", "compression.type"),
    "delete.retention.ms": ("long", "log.cleaner.delete.retention.ms"),
    "file.delete.delay.ms": ("long", "log.segment.delete.delay.ms"),
    "flush.messages": ("long", "log.flush.interval.messages"),
    "flush.ms": ("long", "log.flush.interval.ms"),
    "index.interval.bytes": ("int", "log.index.interval.bytes"),
    "max.compaction.lag.ms": ("long", "log.cleaner.max.compaction.lag.ms"),
    "max.message.bytes": ("int", "message.max.bytes"),
    "message.timestamp.type": ("string", "log.message.timestamp.type"),
    "min.cleanable.dirty.ratio": ("double", "log.cleaner.min.cleanable.ratio"),
    "min.compaction.lag.ms": ("long", "log.cleaner.min.compaction.lag.ms"),
    "min.insync.replicas": ("int", "min.insync.replicas"),
    "retention.bytes": ("long", "log.retention.bytes"),
    "retention.ms": ("long", "log.retention.ms"),
    "segment.bytes": ("int", "log.segment.bytes"),
    "segment.index.bytes": ("int", "log.index.size.max.bytes"),
    "segment.ms": ("long", "log.roll.ms"),
}

_TIMESTAMP_TYPES = ("CreateTime", "LogAppendTime")
_CLEANUP_POLICIES = ("delete", "compact", "compact,delete", "delete,compact")
_CHOICES = {
    "message.timestamp.type": _TIMESTAMP_TYPES,
    "log.message.timestamp.type": _TIMESTAMP_TYPES,
    "compression.type": ("producer", "uncompressed", "none", "gzip", "snappy", "lz4", "zstd"),
    "cleanup.policy": _CLEANUP_POLICIES,
    "log.cleanup.policy": _CLEANUP_POLICIES,
}


# Kafka's lower (and upper) bounds: (min, max or None)
_BOUNDS: dict[str, tuple[float, float | None]] = {
    "retention.ms": (-1, None),
    "log.retention.ms": (-1, None),
    "retention.bytes": (-1, None),
    "log.retention.bytes": (-1, None),
    "segment.bytes": (14, None),
    "log.segment.bytes": (14, None),
    "segment.ms": (1, None),
    "log.roll.ms": (1, None),
    "log.roll.hours": (1, None),
    "segment.index.bytes": (8, None),
    "log.index.size.max.bytes": (8, None),
    "index.interval.bytes": (0, None),
    "log.index.interval.bytes": (0, None),
    "flush.messages": (1, None),
    "flush.ms": (0, None),
    "file.delete.delay.ms": (0, None),
    "log.segment.delete.delay.ms": (0, None),
    "delete.retention.ms": (0, None),
    "log.cleaner.delete.retention.ms": (0, None),
    "min.compaction.lag.ms": (0, None),
    "log.cleaner.min.compaction.lag.ms": (0, None),
    "max.compaction.lag.ms": (1, None),
    "log.cleaner.max.compaction.lag.ms": (1, None),
    "min.cleanable.dirty.ratio": (0, 1),
    "log.cleaner.min.cleanable.ratio": (0, 1),
    "max.message.bytes": (0, None),
    "message.max.bytes": (0, None),
    "min.insync.replicas": (1, None),
    "log.cleaner.backoff.ms": (0, None),
    "log.retention.check.interval.ms": (1, None),
    "num.partitions": (1, None),
}


class ConfigError(ValueError):
    """A configuration value is not valid for its key (Kafka's INVALID_CONFIG)."""


def validate(name: str, kind: str, value: str | None) -> None:
    """Raise ConfigError unless ``value`` parses as ``kind`` (and is an allowed choice)."""
    if value is None:
        return
    number: float | None = None
    if kind in ("int", "long", "short"):
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"invalid value {value!r} for {name}: not an integer") from None
    elif kind == "double":
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"invalid value {value!r} for {name}: not a number") from None
    elif kind == "boolean" and value.lower() not in ("true", "false"):
        raise ConfigError(f"invalid value {value!r} for {name}: not a boolean")
    bounds = _BOUNDS.get(name)
    if bounds is not None and number is not None:
        low, high = bounds
        if number < low:
            raise ConfigError(f"invalid value {value!r} for {name}: value must be at least {low}")
        if high is not None and number > high:
            raise ConfigError(
                f"invalid value {value!r} for {name}: value must be no more than {high}"
            )
    choices = _CHOICES.get(name)
    if choices and value.replace(" ", "") not in choices:
        raise ConfigError(f"invalid value {value!r} for {name}: one of {', '.join(choices)}")


def parse_properties(text: str) -> dict[str, str]:
    """Parse Java ``.properties`` text: ``key=value``, ``key: value``, comments, continuations."""
    values: dict[str, str] = {}
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line[0] in "#!":
            continue
        if line.endswith("\\"):
            pending = line[:-1]
            continue
        cut = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
        if cut < 0:
            key, _, value = line.partition(" ")
        else:
            key, value = line[:cut], line[cut + 1 :]
        values[key.strip()] = value.strip()
    return values


# Broker keys that AlterConfigs may change at runtime (Kafka's dynamic log configs):
# the broker-wide defaults of the topic-level keys, with their synonyms.
DYNAMIC_BROKER_KEYS = frozenset(
    {broker_key for _, broker_key in TOPIC_SETTINGS.values()}
    | {"log.retention.minutes", "log.retention.hours", "log.roll.hours"}
)

# DescribeConfigs config sources
SOURCE_DYNAMIC_BROKER = 2
SOURCE_DYNAMIC_DEFAULT_BROKER = 3
SOURCE_STATIC_BROKER = 4
SOURCE_DEFAULT = 5

_SYNONYMS = {
    "log.retention.ms": (
        ("log.retention.ms", 1),
        ("log.retention.minutes", 60_000),
        ("log.retention.hours", 3_600_000),
    ),
    "log.roll.ms": (("log.roll.ms", 1), ("log.roll.hours", 3_600_000)),
}


class BrokerConfig:
    """Effective broker settings: Kafka defaults, then properties, then overrides,
    then the dynamic configs (cluster-wide defaults, then this broker's own) that
    AlterConfigs sets at runtime."""

    def __init__(self, values: dict[str, str] | None = None) -> None:
        self._values: dict[str, str | None] = {k: s.default for k, s in BROKER_SETTINGS.items()}
        self.ignored: list[str] = []
        self.explicit: set[str] = set()
        self.dynamic: dict[str, str] = {}  # this broker's dynamic configs
        self.dynamic_default: dict[str, str] = {}  # cluster-wide dynamic defaults
        for key, value in (values or {}).items():
            self.set(key, value)

    def layers(self) -> list[tuple[int, dict]]:
        """(config source, values) from the most to the least specific."""
        static = {k: self._values[k] for k in self.explicit}
        defaults = {k: s.default for k, s in BROKER_SETTINGS.items() if s.default is not None}
        return [
            (SOURCE_DYNAMIC_BROKER, self.dynamic),
            (SOURCE_DYNAMIC_DEFAULT_BROKER, self.dynamic_default),
            (SOURCE_STATIC_BROKER, static),
            (SOURCE_DEFAULT, defaults),
        ]

    def source(self, key: str) -> int:
        """Where the effective value of ``key`` comes from (a DescribeConfigs source)."""
        for source, values in self.layers():
            if values.get(key) is not None:
                return source
        return SOURCE_DEFAULT

    def synonyms(self, key: str) -> list[tuple[str, str, int]]:
        """(name, value, source) of every layer setting ``key`` or a synonym, in order."""
        names = [name for name, _ in _SYNONYMS.get(key, ((key, 1),))]
        return [
            (name, values[name], source)
            for source, values in self.layers()
            for name in names
            if values.get(name) is not None
        ]

    def set(self, key: str, value: str) -> None:
        setting = BROKER_SETTINGS.get(key)
        if setting is None:
            self.ignored.append(key)
            log.warning("ignoring unsupported configuration key %s", key)
            return
        validate(key, setting.type, value)
        self._values[key] = value
        self.explicit.add(key)

    def get(self, key: str) -> str | None:
        value = self.dynamic.get(key)
        if value is None:
            value = self.dynamic_default.get(key)
        return self._values[key] if value is None else value

    def get_int(self, key: str) -> int | None:
        value = self.get(key)
        return None if value is None else int(value)

    def get_bool(self, key: str) -> bool:
        return str(self.get(key)).lower() == "true"

    @property
    def node_id(self) -> int:
        broker_id = self.get_int("broker.id")
        return broker_id if broker_id is not None and broker_id >= 0 else self.get_int("node.id")

    @property
    def data_dir(self) -> str:
        dirs = self.get("log.dirs")
        return dirs.split(",")[0].strip() if dirs else self.get("log.dir")

    def listener(self) -> tuple[str, int]:
        """The (host, port) to bind, from the first entry of ``listeners``."""
        return _host_port(self.get("listeners"))

    def advertised_listener(self) -> tuple[str, int]:
        """The (host, port) clients are told to use."""
        advertised = self.get("advertised.listeners")
        host, port = _host_port(advertised or self.get("listeners"))
        return (host or "localhost", port)

    def _scaled(self, key: str) -> int:
        """A value with unit synonyms, resolved layer by layer as Kafka does."""
        for _, values in self.layers():
            for name, scale in _SYNONYMS[key]:
                value = values.get(name)
                if value is not None:
                    number = int(value)
                    return number * scale if number >= 0 else -1
        return -1

    def retention_ms(self) -> int:
        return self._scaled("log.retention.ms")

    def roll_ms(self) -> int:
        return self._scaled("log.roll.ms")

    def topic_default(self, name: str) -> str | None:
        """The broker-wide default of a topic-level key."""
        if name == "retention.ms":
            return str(self.retention_ms())
        if name == "segment.ms":
            return str(self.roll_ms())
        return self.get(TOPIC_SETTINGS[name][1])


def _host_port(listeners: str) -> tuple[str, int]:
    first = listeners.split(",")[0].strip()
    address = first.split("://", 1)[-1]
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)
