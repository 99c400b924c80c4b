"""The dbt project as Dagster sees it.

- :mod:`.translator`: asset keys and groups of dbt nodes, and what the manifest says of them;
- :mod:`.build_inputs`: what a build reads, and whether it changed since the last publish;
- :mod:`.postgres_raw`: the raw layer copied to PostgreSQL for the ``postgres`` target;
- :mod:`.spark_raw`: the raw layer exported as Parquet for the ``spark`` target.
"""
