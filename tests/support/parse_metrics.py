"""Reads a Prometheus text exposition on stdin with the official Python client's parser and
prints every sample as JSON. A malformed exposition makes the parser raise (exit 1)."""

import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families

samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        value = "NaN" if math.isnan(sample.value) else sample.value
        samples.append(
            {"family": family.name, "type": family.type, "name": sample.name,
             "labels": sample.labels, "value": value}
        )
json.dump(samples, sys.stdout)
