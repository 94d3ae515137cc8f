"""Reads Prometheus text expositions with the official Python client's parser and prints
every sample of each as one line of JSON. Stays up for many: each request on stdin is a line
with the exposition's length in bytes, then the exposition; a malformed one is answered
{"error": ...} (the parser raised)."""

import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def samples(text):
    found = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            value = "NaN" if math.isnan(sample.value) else sample.value
            found.append(
                {"family": family.name, "type": family.type, "name": sample.name,
                 "labels": sample.labels, "value": value}
            )
    return found


stdin, stdout = sys.stdin.buffer, sys.stdout
while True:
    header = stdin.readline()
    if not header:
        break
    text = stdin.read(int(header)).decode("utf-8")
    try:
        answer = {"samples": samples(text)}
    except Exception as error:  # the parser's refusal is the answer
        answer = {"error": f"{type(error).__name__}: {error}"}
    stdout.write(json.dumps(answer) + "\n")
    stdout.flush()
