"""Training: frozen-feature cache, per-stage datasets and losses, one accelerate loop for the four stages, finetune.

Inference code (model/, pipeline/, store/) never imports this package; evaluation may (it runs the model over
a folder of videos through the same feature cache).
"""
