"""The inference pipeline: decode -> encode -> fuse (`analyse`), -> store (`indexer`), -> answer (`search`, `ask`).

Inference never imports `damo_cli.training`.
"""
