"""CLI verbs, grouped by concern; `damo_cli.cli` registers them. Heavy imports stay inside the functions."""
