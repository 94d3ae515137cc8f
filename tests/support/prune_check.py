"""Whether a filter on a curated view reaches the raw table's scan, in DuckDB's plan.

Reads {"tables": {"p.d.t": [[column, duckdb type], ...]}, "view": BigQuery SQL,
"filter": SQL} on stdin; translates the view with sqlglot (as local-bigquery does),
plans `SELECT * FROM view WHERE filter` and prints {"pushed": true} when the filter
sits under the window function, on the table scan, rather than above it.
"""
import json
import sys

import duckdb
import sqlglot

request = json.load(sys.stdin)
con = duckdb.connect()
for table, columns in request["tables"].items():
    database, schema, name = table.split(".")
    con.execute(f"ATTACH IF NOT EXISTS ':memory:' AS \"{database}\"")
    con.execute(f"CREATE SCHEMA IF NOT EXISTS \"{database}\".\"{schema}\"")
    defs = ", ".join(f'"{c}" {t}' for c, t in columns)
    con.execute(f'CREATE TABLE "{database}"."{schema}"."{name}" ({defs})')
    # Rows around the filtered day, so that the planner cannot answer from statistics alone.
    for day in ("2026-01-01", "2026-12-31"):
        values = ", ".join(f"'{day}'" if t in ("TIMESTAMP", "DATE") else "NULL" for _, t in columns)
        con.execute(f'INSERT INTO "{database}"."{schema}"."{name}" VALUES ({values})')
view = sqlglot.transpile(request["view"], read="bigquery", write="duckdb")[0]
con.execute(f"CREATE VIEW checked AS {view}")
plan = json.loads(
    con.execute(f"EXPLAIN (FORMAT json) SELECT * FROM checked WHERE {request['filter']}").fetchall()[0][1]
)


def below_window(node, seen_window=False):
    """Whether a node under the WINDOW operator filters (a FILTER, or a scan's Filters)."""
    name = node.get("name", "")
    extra = json.dumps(node.get("extra_info", {}))
    if seen_window and (name in ("FILTER", "EMPTY_RESULT") or "Filters" in extra):
        return True
    seen_window = seen_window or name == "WINDOW"
    return any(below_window(child, seen_window) for child in node.get("children", []))


print(json.dumps({"pushed": any(below_window(n) for n in plan), "view": view}))
