"""assets: the Dagster layer of sae-lake. Thin: read the lake, call sae_models, write one table."""

import warnings

import dagster as dg

# Partitioned asset checks are a Dagster preview feature; the checks here use them on purpose.
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
