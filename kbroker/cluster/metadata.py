"""The cluster's metadata: brokers, topics (with their persistent ids) and partitions.

A plain in-memory snapshot with JSON persistence in the data directory; the embedded
controller is its only writer on a single node.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

METADATA_FILE = "kbroker-metadata.json"


@dataclass
class PartitionState:
    """Leadership of one partition: leader, its epoch, the replica set and the ISR."""

    leader: int
    leader_epoch: int
    replicas: list[int]
    isr: list[int]


@dataclass
class Topic:
    name: str
    topic_id: uuid.UUID
    partitions: list[PartitionState]
    configs: dict[str, str] = field(default_factory=dict)
    internal: bool = False


@dataclass(frozen=True)
class BrokerInfo:
    node_id: int
    host: str
    port: int
    rack: str | None = None


class MetadataStore:
    """Topics by name and by id, saved atomically to ``kbroker-metadata.json``."""

    def __init__(self, data_dir: Path, cluster_id: str | None = None) -> None:
        self.path = Path(data_dir) / METADATA_FILE
        self.topics: dict[str, Topic] = {}
        self.by_id: dict[uuid.UUID, Topic] = {}
        self.cluster_id = cluster_id
        self.next_producer_id = 0
        # dynamic broker configs: broker id (or "" for cluster-wide defaults) -> configs
        self.broker_configs: dict[str, dict[str, str]] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            self.cluster_id = self.cluster_id or _new_cluster_id()
            return
        data = json.loads(self.path.read_text())
        self.cluster_id = data["cluster_id"]
        self.next_producer_id = data.get("next_producer_id", 0)
        self.broker_configs = data.get("broker_configs", {})
        for raw in data["topics"]:
            partitions = [PartitionState(**p) for p in raw["partitions"]]
            topic = Topic(
                raw["name"], uuid.UUID(raw["id"]), partitions, raw["configs"], raw["internal"]
            )
            self._index(topic)

    def _index(self, topic: Topic) -> None:
        self.topics[topic.name] = topic
        self.by_id[topic.topic_id] = topic

    def save(self) -> None:
        data = {
            "cluster_id": self.cluster_id,
            "next_producer_id": self.next_producer_id,
            "broker_configs": self.broker_configs,
            "topics": [
                {
                    "name": t.name,
                    "id": str(t.topic_id),
                    "configs": t.configs,
                    "internal": t.internal,
                    "partitions": [vars(p) for p in t.partitions],
                }
                for t in self.topics.values()
            ],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.path)

    def add(self, topic: Topic) -> None:
        self._index(topic)
        self.save()

    def remove(self, name: str) -> Topic:
        topic = self.topics.pop(name)
        del self.by_id[topic.topic_id]
        self.save()
        return topic


def _new_cluster_id() -> str:
    """A cluster id in Kafka's form: a random UUID, base64url without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
