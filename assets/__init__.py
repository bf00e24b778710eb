"""assets: the Dagster layer of sae-lake. Thin: read the lake, call sae_models, write one table."""
