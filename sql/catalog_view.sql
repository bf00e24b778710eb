-- One view per lake table. Hive keys in the path (model=..., sae=...) become VARCHAR columns.
-- {table} and {files} are filled in by the catalog asset: a glob of the table's Parquet files on a disk, or the
-- list of the keys its partitions' manifests name on an object store. The same statement works in any DuckDB shell.
CREATE OR REPLACE VIEW {table} AS
SELECT *
FROM read_parquet({files}, hive_partitioning = true, hive_types_autocast = false, union_by_name = true);
