"""Benchmarks of the spend warehouse: ``uv run python -m bench`` (``make bench``).

One run builds a proxy database of a chosen size with the simulator (30 days of traffic, seed 7)
and measures, on that same data, each thing in its own process (wall time, and peak RSS of the
process tree from ``wait4``):

1. **Extraction** of the spend logs: ``COPY (<the extractor's SELECT>) TO STDOUT (FORMAT binary)``
   through psql (the physical limit), our cold incremental extract (Parquet lake + DuckDB raw
   table), and dlt's ``sql_table`` source with the pyarrow backend into Parquet files, reading the
   same columns. Rows/s, MB/s (of the COPY stream, and of the Parquet written), ratios.
2. **Incremental runs**: nothing new (the extract, and a whole Dagster ``extract_job``), and 1 %
   new rows of which half are late (old ``startTime``, arriving now), against the cold load.
3. **Rollups**: the marts' queries written by hand against the proxy's own tables
   (:mod:`bench.pg_rollups`, what a user runs today) against ``dbt build`` on DuckDB and on the
   ``postgres`` target (raw layer copied there first, timed apart).
4. **Scaling**: the same at each of ``--sizes``.

Prints a Markdown table, writes ``bench/results/<timestamp>.json`` and ``latest.json``, and
rewrites the figures of ``bench/RESULTS.md`` (its ``## Notes`` section is kept).
"""
