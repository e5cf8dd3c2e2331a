"""The seed ``reviews`` program's funnel as one DuckDB query: the independent reference
that bench/batch.py times against and the tests compare with row for row; and the
second bench shape's (bench/programs/audiences.yaml).

It mirrors configs/reviews.yaml on a fresh store (no opt-out registry, nothing sent yet);
the e2e tests compare the CLI's store with it row for row.
"""

from __future__ import annotations

REVIEWS_SQL = """
WITH d AS (SELECT * FROM read_parquet('{wh}/deliveries/*.parquet')),
good AS (SELECT * FROM d WHERE customer_id IS NOT NULL AND delivered_at IS NOT NULL),
j AS (
  SELECT g.customer_id, g.product_id AS subject_id, g.delivered_at AS event_time,
         c.trust_score, c.opted_out, c.region, c.engagement_score, p.category
  FROM good g
  LEFT JOIN read_parquet('{wh}/customers/*.parquet') c USING (customer_id)
  LEFT JOIN read_parquet('{wh}/products/*.parquet') p ON g.product_id = p.product_id),
contacts AS (SELECT * FROM read_parquet('{wh}/contacts/*.parquet')),
subject_asks AS (
  SELECT customer_id, subject_id FROM contacts
  WHERE program = '{program}' AND contacted_at >= TIMESTAMPTZ '{now}' - INTERVAL 365 DAY
  GROUP BY ALL),
all_asks AS (
  SELECT customer_id FROM contacts WHERE contacted_at >= TIMESTAMPTZ '{now}' - INTERVAL 30 DAY
  GROUP BY ALL HAVING count(DISTINCT (program, subject_id)) >= 3),
acted AS (SELECT DISTINCT customer_id, subject_id FROM read_parquet('{wh}/responses/*.parquet')
          WHERE program = '{program}'),
kept AS (
  SELECT j.* FROM j
  WHERE event_time >= TIMESTAMPTZ '{now}' - INTERVAL 30 DAY
    AND trust_score >= 0.3
    AND opted_out IS NOT TRUE
    AND (category IS NULL OR category NOT IN ('adult', 'tobacco'))
    AND NOT EXISTS (SELECT 1 FROM subject_asks s WHERE s.customer_id = j.customer_id AND s.subject_id = j.subject_id)
    AND NOT EXISTS (SELECT 1 FROM all_asks a WHERE a.customer_id = j.customer_id)
    AND NOT EXISTS (SELECT 1 FROM acted r WHERE r.customer_id = j.customer_id AND r.subject_id = j.subject_id)
    AND engagement_score >= 0.1),
best AS (SELECT * FROM kept QUALIFY row_number() OVER (
           PARTITION BY customer_id, subject_id ORDER BY engagement_score DESC, event_time DESC) = 1)
SELECT customer_id, subject_id, engagement_score AS score,
       strftime(event_time AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ') AS deliver_after, region, category
FROM best ORDER BY engagement_score DESC, event_time DESC, customer_id, subject_id LIMIT {top_n}
"""


def reviews_reference(warehouse: str, now: str, top_n: int = 50_000, program: str = "reviews"):
    """Runs the reference query: rows of (customer, subject, score, deliver_after, region,
    category), best first, as the store should hold them."""
    import duckdb

    con = duckdb.connect()
    try:
        return con.execute(
            REVIEWS_SQL.format(wh=warehouse, now=now, top_n=top_n, program=program)
        ).fetchall()
    finally:
        con.close()


AUDIENCES_SQL = """
WITH a AS (
  SELECT trim(user_key) AS customer_id, trim(item_key) AS subject_id, seen_at AS event_time, dwell
  FROM read_parquet('{d}/activity/*.parquet')
  WHERE trim(user_key) <> '' AND trim(item_key) <> '' AND seen_at IS NOT NULL),
j AS (
  SELECT a.*, u.affinity, u.opted_out, u.segment, i.category FROM a
  LEFT JOIN read_parquet('{d}/users/*.parquet') u ON a.customer_id = u.user_key
  LEFT JOIN read_parquet('{d}/items/*.parquet') i ON a.subject_id = i.item_key),
kept AS (
  SELECT * FROM j
  WHERE event_time >= TIMESTAMPTZ '{now}' - INTERVAL 14 DAY
    AND dwell >= 5 AND affinity >= 0.2
    AND opted_out IS NOT TRUE
    AND (category IS NULL OR category NOT IN ('restricted', 'archived'))
    AND affinity >= 0.25),
best AS (SELECT * FROM kept QUALIFY row_number() OVER (
           PARTITION BY customer_id, subject_id ORDER BY affinity DESC, event_time DESC) = 1)
SELECT customer_id, subject_id, affinity AS score FROM best
QUALIFY row_number() OVER (
  PARTITION BY subject_id ORDER BY affinity DESC, event_time DESC, customer_id) <= {top_n}
"""


def audiences_reference(data: str, now: str, top_n: int = 200):
    """bench/programs/audiences.yaml as one DuckDB query: (customer, subject, score) rows."""
    import duckdb

    con = duckdb.connect()
    try:
        return con.execute(AUDIENCES_SQL.format(d=data, now=now, top_n=top_n)).fetchall()
    finally:
        con.close()
