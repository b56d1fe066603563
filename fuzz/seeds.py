#!/usr/bin/env python3
"""Writes fuzz/corpus/TARGET/seed-* from the examples of the seed documents
(../shared/seeds beside the checkout) and the repository's own configs: each
target starts from what its wire format looks like when it is right.

Run:  python3 fuzz/seeds.py [SEEDS_DIR]   (default: ../shared/seeds)
"""
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SEEDS = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "seeds")
PROTOCOLS = os.path.join(SEEDS, "..", "protocols")


def seed(name):
    with open(os.path.join(SEEDS, name), encoding="utf-8") as f:
        return f.read()


def write(target, items):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.startswith("seed-"):
            os.remove(os.path.join(d, f))
    for i, data in enumerate(items):
        if isinstance(data, str):
            data = data.encode("utf-8")
        with open(os.path.join(d, f"seed-{i:02d}"), "wb") as f:
            f.write(data)
    print(f"{target}: {len(items)} seeds")


def blocks(text, start, end):
    """Every block from a line containing `start` to the next containing `end`."""
    out, cur = [], None
    for line in text.splitlines():
        if cur is None and start in line:
            cur = []
        if cur is not None:
            cur.append(line)
            if end in line:
                out.append("\n".join(cur) + "\n")
                cur = None
    return out


def json_blocks(text):
    """The balanced {...} blocks of a text that start a line."""
    out, depth, cur = [], 0, []
    for line in text.splitlines():
        if depth == 0 and not line.lstrip().startswith("{"):
            continue
        cur.append(line)
        depth += line.count("{") - line.count("}")
        if depth <= 0:
            out.append("\n".join(cur))
            cur, depth = [], 0
    return out


# XIP (seed 000): the vendor's URL, with the seed's own secret and numbers.
import hashlib

auth = hashlib.md5(b"B4n0ff13P13!_" + b"102821" + b"16045551234" + b"16045550000").hexdigest()
q = f"PartnerID=102821&Requestor=16045551234&Fulfillment=16045550000&Auth={auth}"
write("xip", [q, q + "\0", "\0" + q, "PartnerID=xxxxxx&Requestor=xxxxxx&Fulfillment=xxxxxx&Auth=xxxxxx",
              q + "&Requestor=16045551234\0Fulfillment=16045550000"])

# Airtel (seed 001): the request sample, its placeholders filled, and the
# event and CDR callbacks' samples.
airtel = seed("001_3ca8a5aca0041ea3.txt")
samples = []
for b in json_blocks(airtel):
    b = re.sub(r"\{\{[A-Za-z]+\}\}", "9810000001", b)
    samples.append(b)
write("airtel", samples)

# Spokn (seed 002): the call form and the answers c2cd reads.
spokn = seed("002_236f0d2c89e9c4dd.txt")
forms = ["aparty=%2B18474255380&bparty=%2B14155550123",
         "aparty=18474255380&bparty=14155550123&apartycid=18005550100&duration=30&token=abc&maxretries=2&retrytime=60&url=http%3A%2F%2Fexample.com%2Fcb",
         "aparty=+18474255380&bparty=+14155550123&aparty=+18474255381"]
write("spokn", forms)
answers = [b.encode() for b in blocks(spokn, "<?xml", "</spokn>")]

# RoundTrip (seed 003): every <Call> example.
rt = seed("003_ca34a3c1536d19da.txt")
calls = blocks(rt, "<Call", "</Call>")
xml = blocks(rt, "<?xml", "</Call>")
write("roundtrip", calls + xml)

# Cloud9 (seed 004): the variables it lists, as a form.
c9 = seed("004_bd7371b083975c32.txt")
names = [m.group(1) for m in re.finditer(r"^([A-Z_]+) ?\*? ?\|?\s*$", c9, re.M)]
values = {"TIMESTAMP": "2026-11-22 10:15:00", "IMSI": "234180000000001", "TRANSACTIONID": "1002",
          "CARRIERID": "C9TEST", "MSISDN": "+447700900123", "MCC": "234", "MNC": "18", "TADIG": "GBWC9",
          "REQUEST_TYPE": "AUTH_CALLBACK_CALL", "CALLDESTINATION": "+447700900200", "USER_BALANCE": "0.00",
          "IOT": "0", "IOT_CHARGE": "0.00", "MSRN": "+447700900001", "ECC": "1"}
from urllib.parse import urlencode

full = urlencode([(n, values.get(n, "1")) for n in names or values])
write("cloud9", [full, full.replace("MSRN=%2B447700900001", "MSRN=OFFLINE"), urlencode(values)])

# AMI: the transcript of a real Asterisk, cut at its blank lines; the first
# byte of each seed is the step the target feeds it in.
ami = []
path = os.path.join(PROTOCOLS, "asterisk-22-ami-transcript.txt")
if os.path.exists(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read().replace("\r\n", "\n").replace("\n", "\r\n")
    banner = "Asterisk Call Manager/9.0.0\r\n"
    msgs = [m + "\r\n\r\n" for m in text.split("\r\n\r\n") if ":" in m]
    for step, i in zip([1, 7, 64, 255], range(0, max(1, len(msgs)), max(1, len(msgs) // 4))):
        ami.append(bytes([step]) + (banner + "".join(msgs[i:i + 12])).encode())
ami.append(bytes([3]) + b"Asterisk Call Manager/9.0.0\r\nResponse: Success\r\nActionID: 1\r\nMessage: Authentication accepted\r\n\r\n")
write("ami", ami)

# Upstream bodies: 0 a Spokn answer, 1 a Spokn leg report, 2 an Airtel body.
up = [b"\0" + a for a in answers]
up += [b"\1leg=1&status=" + str(s).encode() for s in range(8)]
up += [b"\2" + s.encode() for s in samples]
write("upstream", up)

# The config: the shipped example and the embedded demo.
cfgs = []
for p in ["etc/c2cd.toml", "src/config/demo.toml"]:
    with open(os.path.join(ROOT, p), encoding="utf-8") as f:
        cfgs.append(f.read())
write("config", cfgs)
write("native", [json.dumps({"a": {"participants": [{"number": "+16045551234"}]},
                             "b": {"participants": [{"number": "+16045550000", "retries": 1}], "strategy": "parallel"},
                             "record": True, "reference": "crm-42", "time_limit": 600})])
