"""Decodes what kcat prints with -f '%K %S\n%k%s' (key length, value length,
then the raw key and value) using the Apache Avro reference implementation
and the writer schemas from the schema registry at argv[1]. Prints one JSON
object per record: {"key": ..., "value": ...}."""
import datetime
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


def writer_schema(schema_id):
    if schema_id not in schemas:
        with urllib.request.urlopen(f"{registry}/schemas/ids/{schema_id}") as r:
            schemas[schema_id] = avro.schema.parse(json.load(r)["schema"])
    return schemas[schema_id]


def decode(b):
    if b is None:
        return None
    if len(b) < 5 or b[0] != 0:
        raise ValueError(f"not Confluent-framed Avro: {b[:8]!r}")
    (schema_id,) = struct.unpack(">I", b[1:5])
    reader = avro.io.DatumReader(writer_schema(schema_id))
    return reader.read(avro.io.BinaryDecoder(io.BytesIO(b[5:])))


def plain(o):
    if isinstance(o, decimal.Decimal):
        return str(o)
    if isinstance(o, (datetime.datetime, datetime.date, datetime.time)):
        return o.isoformat()
    if isinstance(o, bytes):
        return "hex:" + o.hex()
    if isinstance(o, uuid.UUID):
        return str(o)
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
    print(json.dumps({"key": decode(key), "value": decode(value)}, default=plain, sort_keys=True))
