"""Numbers as people read them: four decimals, never 0.25795626640319824 or 2.177e-36."""

DIGITS = 4


def rounded(value, digits: int = DIGITS):
    """Floats rounded, inside dicts and lists too; everything else as it is."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {key: rounded(item, digits) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item, digits) for item in value]
    return value
