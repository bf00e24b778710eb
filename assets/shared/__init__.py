"""The Dagster pieces every domain shares: the lake resource, partitions, automation conditions, metadata."""
