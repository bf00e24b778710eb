"""One folder per domain (world, models, activations, saes, interpretability, analysis; later steering,
selection, patching), each with its assets, checks, jobs and sensors side by side. ``assets/definitions.py``
loads everything here."""
