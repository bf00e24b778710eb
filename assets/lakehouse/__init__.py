"""Everything outside Dagster: lake.toml, lake I/O, the declared tables, the SQL catalog, the CLI and the demo."""
