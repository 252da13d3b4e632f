"""Reads what kcat prints with -f '%K %S\n%k%s' for records of
format.encoding json with their Connect schemas ({"schema", "payload"}),
with python3's json module (strictly: NaN and Infinity literals refused),
and renders the payloads as avro_types.py renders Avro: floats as Python's
repr ('nan', 'inf', '-inf'; a float32 widened as Avro readers widen it),
Connect decimals (base64 of the unscaled value, scale in the schema) as
str of the Decimal Apache Avro builds, bytes as "hex:...". One JSON object
per record: {"key":..., "value":...}."""
import base64
import decimal
import json
import struct
import sys

FLOATS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def bad(c):
    raise ValueError("non-JSON constant " + c)


def render(schema, v):
    if v is None:
        return None
    t = schema["type"]
    if schema.get("name") == "org.apache.kafka.connect.data.Decimal":
        u = int.from_bytes(base64.b64decode(v, validate=True), "big", signed=True)
        prec = decimal.getcontext().prec
        try:
            decimal.getcontext().prec = int(schema["parameters"]["connect.decimal.precision"])
            return str(decimal.Decimal(u).scaleb(-int(schema["parameters"]["scale"])))
        finally:
            decimal.getcontext().prec = prec
    if t == "struct":
        if set(v) != {f["field"] for f in schema["fields"]}:
            raise ValueError(f"fields {sorted(v)} are not the schema's")
        return {f["field"]: render(f, v[f["field"]]) for f in schema["fields"]}
    if t == "array":
        return [render(schema["items"], x) for x in v]
    if t == "map":
        return {k: render(schema["values"], x) for k, x in v.items()}
    if t in ("float", "float64"):
        f = FLOATS[v] if isinstance(v, str) else float(v)
        if t == "float":
            f = struct.unpack("<f", struct.pack("<f", f))[0]
        return repr(f)
    if t == "bytes":
        return "hex:" + base64.b64decode(v, validate=True).hex()
    if t in ("int32", "int64"):
        if not isinstance(v, int) or isinstance(v, bool):
            raise ValueError(f"{t} {v!r} is not an integer")
    return v


def read(b):
    if b is None:
        return None
    rec = json.loads(b, parse_constant=bad)
    if set(rec) != {"schema", "payload"}:
        raise ValueError(f"not a JsonConverter record with schema: {sorted(rec)}")
    return render(rec["schema"], rec["payload"])


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
    print(json.dumps({"key": read(key), "value": read(value)}, sort_keys=True))
