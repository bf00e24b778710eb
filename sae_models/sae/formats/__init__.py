"""Readers of the SAE formats other libraries write, each turning a folder into what a SAELens directory of the
same SAE holds (a config dict and its tensors), which ``sae_models.sae.io.load_sae`` then imports."""

import re

_LAYER_IN_HOOK = re.compile(r"(?:blocks|layers)\.(\d+)(?:\.|$)")


def trained_layer(metadata: dict) -> int | None:
    """The block an imported SAE was trained at, where its layout says so: Gemma Scope's and dictionary_learning's
    ``layer``, SAELens's ``hook_name`` (``blocks.12.hook_resid_post``), sparsify's hook point (``layers.12``)."""
    if isinstance(metadata.get("layer"), int):
        return metadata["layer"]
    for key in ("hook_name", "hookpoint"):
        if isinstance(metadata.get(key), str) and (m := _LAYER_IN_HOOK.search(metadata[key])):
            return int(m.group(1))
    return None
