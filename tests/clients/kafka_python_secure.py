"""kafka-python over a secured listener: produce COUNT records and read them back.

usage: kafka_python_secure.py BOOTSTRAP PROTOCOL MECHANISM USER PASSWORD CAFILE TOPIC COUNT
PROTOCOL is SSL, SASL_PLAINTEXT or SASL_SSL; MECHANISM is PLAIN,
SCRAM-SHA-256 or SCRAM-SHA-512 (ignored for SSL). Prints "ok COUNT".
"""
import sys

from kafka import KafkaConsumer, KafkaProducer

bootstrap, protocol, mechanism, user, password, cafile, topic, count = sys.argv[1:9]
count = int(count)
common = {"bootstrap_servers": bootstrap, "security_protocol": protocol}
if protocol.startswith("SASL"):
    common.update(sasl_mechanism=mechanism, sasl_plain_username=user, sasl_plain_password=password)
if protocol.endswith("SSL"):
    common.update(ssl_cafile=cafile)

producer = KafkaProducer(acks="all", **common)
for i in range(count):
    producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
producer.flush(timeout=60)
producer.close()

consumer = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=20000, **common)
seen = []
for message in consumer:
    seen.append(message.value.decode())
    if len(seen) == count:
        break
consumer.close()
assert seen == [f"v{i}" for i in range(count)], seen[:5]
print(f"ok {count}")
