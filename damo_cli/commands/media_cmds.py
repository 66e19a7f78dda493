"""placeholder"""
def probe() -> None:
    """Placeholder."""


def transcribe() -> None:
    """Placeholder."""
