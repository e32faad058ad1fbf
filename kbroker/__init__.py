"""kbroker: a Kafka broker in Python that stock Kafka clients talk to as to Apache Kafka."""

__version__ = "0.1.0"
