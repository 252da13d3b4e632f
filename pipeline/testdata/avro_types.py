"""Decodes what kcat prints with -f '%K %S\n%k%s' with the Apache Avro
reference implementation and the writer schemas from the schema registry at
argv[1], like avro_decode.py, for the type tests: the date and time logical
types are removed from the writer schemas so dates, times and timestamps
decode as the exact int or long written (Python's datetime cannot hold
infinities, BC dates or years past 9999); decimals, uuids and the rest keep
theirs. Floats print as Python's repr ('nan', 'inf', '-inf'), decimals as
str, bytes as "hex:...". One JSON object per record: {"key":..., "value":...}."""
import decimal
import io
import json
import struct
import sys
import urllib.request
import uuid

import avro.io
import avro.schema

registry = sys.argv[1].rstrip("/")
schemas = {}
TIME_TYPES = {"date", "time-millis", "time-micros", "timestamp-millis", "timestamp-micros",
              "local-timestamp-millis", "local-timestamp-micros"}


def strip_time(o):
    if isinstance(o, dict):
        if o.get("logicalType") in TIME_TYPES:
            del o["logicalType"]
        for v in o.values():
            strip_time(v)
    elif isinstance(o, list):
        for v in o:
            strip_time(v)


def writer_schema(schema_id):
    if schema_id not in schemas:
        with urllib.request.urlopen(f"{registry}/schemas/ids/{schema_id}") as r:
            js = json.loads(json.load(r)["schema"])
        strip_time(js)
        schemas[schema_id] = avro.schema.parse(json.dumps(js))
    return schemas[schema_id]


def decode(b):
    if b is None:
        return None
    if len(b) < 5 or b[0] != 0:
        raise ValueError(f"not Confluent-framed Avro: {b[:8]!r}")
    (schema_id,) = struct.unpack(">I", b[1:5])
    buf = io.BytesIO(b[5:])
    rec = avro.io.DatumReader(writer_schema(schema_id)).read(avro.io.BinaryDecoder(buf))
    if buf.read():
        raise ValueError("trailing bytes after the record")
    return rec


def plain(o):
    if isinstance(o, dict):
        return {k: plain(v) for k, v in o.items()}
    if isinstance(o, list):
        return [plain(v) for v in o]
    if isinstance(o, float):
        return repr(o)
    if isinstance(o, decimal.Decimal):
        return str(o)
    if isinstance(o, bytes):
        return "hex:" + o.hex()
    if isinstance(o, uuid.UUID):
        return str(o)
    if o is None or isinstance(o, (str, int, bool)):
        return o
    raise TypeError(f"cannot render {type(o)}")


data = sys.stdin.buffer.read()
pos = 0
while pos < len(data):
    nl = data.index(b"\n", pos)
    klen, vlen = (int(x) for x in data[pos:nl].split(b" "))
    pos = nl + 1
    key = value = None
    if klen >= 0:
        key, pos = data[pos:pos + klen], pos + klen
    if vlen >= 0:
        value, pos = data[pos:pos + vlen], pos + vlen
    print(json.dumps({"key": plain(decode(key)), "value": plain(decode(value))}, sort_keys=True))
