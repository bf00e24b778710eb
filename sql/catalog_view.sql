-- One view per lake table. Hive keys in the path (model=..., sae=...) become VARCHAR columns.
-- {table} and {glob} are filled in by the catalog asset; the same statement works in any DuckDB shell.
CREATE OR REPLACE VIEW {table} AS
SELECT *
FROM read_parquet('{glob}', hive_partitioning = true, hive_types_autocast = false, union_by_name = true);
