"""damo: ask questions about your own videos and find the moments you ask for, offline (DaMO, arXiv 2506.11558)."""

__version__ = "0.1.0"
