"""Training and evaluation data: composed videos with labels from construction, speech synthesis, footage sources,
and converters from public grounding datasets into the one JSON Lines schema (docs/architecture.md §4).

Inference code must not import this package.
"""
