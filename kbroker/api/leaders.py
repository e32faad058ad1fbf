"""ElectLeaders: preferred or unclean leader elections asked for by an admin client."""

from __future__ import annotations

from kbroker.wire.connection import Request
from kbroker.wire.errors import ErrorCode, KafkaError

PREFERRED, UNCLEAN = 0, 1


async def handle(broker, request: Request) -> dict:
    body = request.body
    store = broker.controller.store
    wanted = body["topic_partitions"]
    if wanted is None:  # every partition of every topic
        wanted = [
            {"topic": t.name, "partitions": list(range(len(t.partitions)))}
            for t in store.topics.values()
        ]
    results = []
    for entry in wanted:
        topic = store.topics.get(entry["topic"])
        partition_results = []
        for index in entry["partitions"]:
            result = {"partition_id": index}
            try:
                if topic is None or not 0 <= index < len(topic.partitions):
                    raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
                broker.controller.elect_leader(
                    topic, index, unclean=body["election_type"] == UNCLEAN
                )
            except KafkaError as exc:
                result.update(error_code=exc.code, error_message=exc.message)
            partition_results.append(result)
        results.append({"topic": entry["topic"], "partition_result": partition_results})
    return {"replica_election_results": results}
