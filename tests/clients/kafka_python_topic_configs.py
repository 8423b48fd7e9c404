"""Every topic config of Kafka 4.0 round-trips through CreateTopics,
IncrementalAlterConfigs and DescribeConfigs with kafka-python; invalid values
get INVALID_CONFIG (40) with Kafka's message; list configs take APPEND and
SUBTRACT; DescribeConfigs reports sources and synonyms.

Usage: kafka_python_topic_configs.py BOOTSTRAP
"""
import sys

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

# name -> (a valid value other than the default, an invalid value, the end of Kafka's message for it)
CONFIGS = {
    "cleanup.policy": ("compact,delete", "shred", "Invalid value shred for configuration cleanup.policy: String must be one of: compact, delete"),
    "compression.gzip.level": ("5", "0", "Invalid value 0 for configuration compression.gzip.level: Value must be between 1 and 9 or equal to -1"),
    "compression.lz4.level": ("12", "18", "Invalid value 18 for configuration compression.lz4.level: Value must be no more than 17"),
    "compression.type": ("zstd", "brotli", "Invalid value brotli for configuration compression.type: String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer"),
    "compression.zstd.level": ("9", "23", "Invalid value 23 for configuration compression.zstd.level: Value must be no more than 22"),
    "delete.retention.ms": ("3600000", "-1", "Invalid value -1 for configuration delete.retention.ms: Value must be at least 0"),
    "file.delete.delay.ms": ("1000", "x", "Invalid value x for configuration file.delete.delay.ms: Not a number of type LONG"),
    "flush.messages": ("100", "0", "Invalid value 0 for configuration flush.messages: Value must be at least 1"),
    "flush.ms": ("1000", "-1", "Invalid value -1 for configuration flush.ms: Value must be at least 0"),
    "follower.replication.throttled.replicas": ("0:1,1:2", "zero", "must be the literal '*' or a list of replicas in the following format: [partitionId]:[brokerId],[partitionId]:[brokerId],..."),
    "index.interval.bytes": ("8192", "-1", "Invalid value -1 for configuration index.interval.bytes: Value must be at least 0"),
    "leader.replication.throttled.replicas": ("*", "1-2", "must be the literal '*' or a list of replicas in the following format: [partitionId]:[brokerId],[partitionId]:[brokerId],..."),
    "local.retention.bytes": ("1000000", "-3", "Invalid value -3 for configuration local.retention.bytes: Value must be at least -2"),
    "local.retention.ms": ("60000", "-3", "Invalid value -3 for configuration local.retention.ms: Value must be at least -2"),
    "max.compaction.lag.ms": ("86400000", "0", "Invalid value 0 for configuration max.compaction.lag.ms: Value must be at least 1"),
    "max.message.bytes": ("2000000", "3000000000", "Invalid value 3000000000 for configuration max.message.bytes: Not a number of type INT"),
    "message.downconversion.enable": ("false", "maybe", "Invalid value maybe for configuration message.downconversion.enable: Expected value to be either true or false"),
    "message.timestamp.after.max.ms": ("7200000", "-1", "Invalid value -1 for configuration message.timestamp.after.max.ms: Value must be at least 0"),
    "message.timestamp.before.max.ms": ("86400000", "-1", "Invalid value -1 for configuration message.timestamp.before.max.ms: Value must be at least 0"),
    "message.timestamp.type": ("LogAppendTime", "Whenever", "Invalid value Whenever for configuration message.timestamp.type: String must be one of: CreateTime, LogAppendTime"),
    "min.cleanable.dirty.ratio": ("0.25", "1.5", "Invalid value 1.5 for configuration min.cleanable.dirty.ratio: Value must be no more than 1"),
    "min.compaction.lag.ms": ("1000", "-1", "Invalid value -1 for configuration min.compaction.lag.ms: Value must be at least 0"),
    "min.insync.replicas": ("1", "0", "Invalid value 0 for configuration min.insync.replicas: Value must be at least 1"),
    "preallocate": ("true", "yes", "Invalid value yes for configuration preallocate: Expected value to be either true or false"),
    "remote.log.copy.disable": ("true", "1", "Invalid value 1 for configuration remote.log.copy.disable: Expected value to be either true or false"),
    "remote.log.delete.on.disable": ("true", "no", "Invalid value no for configuration remote.log.delete.on.disable: Expected value to be either true or false"),
    "remote.storage.enable": ("false", "on", "Invalid value on for configuration remote.storage.enable: Expected value to be either true or false"),
    "retention.bytes": ("1000000000", "lots", "Invalid value lots for configuration retention.bytes: Not a number of type LONG"),
    "retention.ms": ("86400000", "-5", "Invalid value -5 for configuration retention.ms: Value must be at least -1"),
    "segment.bytes": ("104857600", "12", "Invalid value 12 for configuration segment.bytes: Value must be at least 14"),
    "segment.index.bytes": ("1048576", "3", "Invalid value 3 for configuration segment.index.bytes: Value must be at least 4"),
    "segment.jitter.ms": ("100", "-1", "Invalid value -1 for configuration segment.jitter.ms: Value must be at least 0"),
    "segment.ms": ("60000", "0", "Invalid value 0 for configuration segment.ms: Value must be at least 1"),
    "unclean.leader.election.enable": ("true", "sometimes", "Invalid value sometimes for configuration unclean.leader.election.enable: Expected value to be either true or false"),
}


def topic_resource(name, configs=None):
    return ConfigResource(ConfigResourceType.TOPIC, name, configs=configs)


def describe(admin, topic, synonyms=False):
    result = admin.describe_configs([topic_resource(topic)], include_synonyms=synonyms, config_filter="all")
    return result["topic"][topic]


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def main():
    admin = KafkaAdminClient(bootstrap_servers=sys.argv[1], request_timeout_ms=20000)

    # Every config, set at creation, is stored and described as set.
    created = {name: valid for name, (valid, _, _) in CONFIGS.items()}
    admin.create_topics([NewTopic("all-configs", 1, 1, topic_configs=created)])
    described = describe(admin, "all-configs")
    for name, value in created.items():
        entry = described.get(name)
        check(entry is not None, f"{name} is not described")
        check(entry["value"] == value, f"{name}: described {entry['value']!r}, set {value!r}")
        check(entry["config_source"] == "DYNAMIC_TOPIC_CONFIG", f"{name}: source {entry['config_source']}")
    missing = set(CONFIGS) - set(described)
    check(not missing, f"not described: {missing}")

    # Each one altered incrementally back to its default comes back as the default.
    admin.create_topics([NewTopic("altered", 1, 1)])
    defaults = describe(admin, "altered")
    for name, (valid, _, _) in CONFIGS.items():
        result = admin.alter_configs([topic_resource("altered", {name: ("SET", valid)})])
        check(result["topic"]["altered"] == "OK", f"SET {name}={valid}: {result}")
        check(describe(admin, "altered")[name]["value"] == valid, f"{name} after SET")
        result = admin.alter_configs([topic_resource("altered", {name: ("DELETE", None)})])
        check(result["topic"]["altered"] == "OK", f"DELETE {name}: {result}")
        entry = describe(admin, "altered")[name]
        check(entry["value"] == defaults[name]["value"], f"{name} after DELETE: {entry['value']!r}")
        check(entry["config_source"] == "DEFAULT_CONFIG", f"{name} after DELETE: {entry['config_source']}")

    # Invalid values: INVALID_CONFIG with Kafka's message, at creation and at alteration.
    for name, (_, invalid, message) in CONFIGS.items():
        result = admin.create_topics([NewTopic("refused", 1, 1, topic_configs={name: invalid})], raise_errors=False)
        topic = result["topics"][0]
        code, text = topic["error_code"], topic["error_message"]
        check(code == 40, f"create with {name}={invalid}: error {code} {text}")
        check(text.endswith(message), f"create with {name}={invalid}: message {text!r}")
        result = admin.alter_configs([topic_resource("altered", {name: ("SET", invalid)})])
        text = str(result["topic"]["altered"])
        check("Error 40" in text and message in text, f"alter {name}={invalid}: {text}")
    result = admin.create_topics([NewTopic("refused", 1, 1, topic_configs={"no.such.config": "1"})], raise_errors=False)
    topic = result["topics"][0]
    check(topic["error_code"] == 40 and topic["error_message"] == "Unknown topic config name: no.such.config", f"unknown config: {topic}")

    # Configs checked against each other.
    result = admin.alter_configs([topic_resource("altered", {"min.compaction.lag.ms": ("SET", "10"), "max.compaction.lag.ms": ("SET", "5")})])
    check("conflict topic config setting min.compaction.lag.ms (10) > max.compaction.lag.ms (5)" in str(result), f"lag conflict: {result}")

    # APPEND and SUBTRACT on a list config, refused on others.
    admin.alter_configs([topic_resource("altered", {"cleanup.policy": ("APPEND", "compact")})])
    check(describe(admin, "altered")["cleanup.policy"]["value"] == "delete,compact", "APPEND compact")
    admin.alter_configs([topic_resource("altered", {"cleanup.policy": ("SUBTRACT", "delete")})])
    check(describe(admin, "altered")["cleanup.policy"]["value"] == "compact", "SUBTRACT delete")
    result = admin.alter_configs([topic_resource("altered", {"retention.ms": ("APPEND", "5")})])
    check("Can't APPEND to key retention.ms because its type is not LIST." in str(result), f"APPEND to a LONG: {result}")

    # Synonyms: the override first, then the broker-level default.
    admin.alter_configs([topic_resource("altered", {"retention.ms": ("SET", "3600000")})])
    entry = describe(admin, "altered", synonyms=True)["retention.ms"]
    names = [(s["name"], s["source"]) for s in entry["synonyms"]]
    check(names[0] == ("retention.ms", "DYNAMIC_TOPIC_CONFIG"), f"synonyms {names}")
    check(names[-1] == ("log.retention.ms", "DEFAULT_CONFIG"), f"synonyms {names}")
    check(entry["config_type"] == "LONG", f"type {entry['config_type']}")
    print(f"OK {len(CONFIGS)} configs")


if __name__ == "__main__":
    main()
