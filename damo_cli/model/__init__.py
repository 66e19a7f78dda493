"""The DaMO model: global residual -> temporal pathway -> T-Fuseformer -> per-time head -> Q-Former -> LLM.

`damo.py` is the model, top to bottom; `config.py` turns a card into sizes (no torch import); `lora.py` wires LoRA
and the training stages; `checkpoint.py` saves and verifies trainable weights; `params.py` counts parameters on the
meta device; `hub_towers.py` adapts transformers vision/audio towers to the (global, local) features the model reads.
"""

from damo_cli.model.config import DamoConfig

__all__ = ["DamoConfig"]
