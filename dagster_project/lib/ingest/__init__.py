"""Extraction: from the proxy database to the Parquet lake and the ``raw`` schema of DuckDB.

- :mod:`.source`: the one read-only source session, column discovery and the SELECTs;
- :mod:`.windows`: the watermark and the window each run reads (pure);
- :mod:`.contract`: the raw layer's tables, columns and types;
- :mod:`.lake`: Parquet files published through one atomically replaced manifest per table,
  and :class:`.lake.Lake`, which picks the table format;
- :mod:`.iceberg`: the same files published as Iceberg tables, one commit per publish;
- :mod:`.load`: the lake's files merged into ``raw.*`` of the build DuckDB;
- :mod:`.extract`: one extraction pass, step by step (the order makes a kill safe);
- :mod:`.reconcile`: the lake compared with the source, per day.
"""
