"""placeholder"""
def doctor() -> None:
    """Placeholder."""
