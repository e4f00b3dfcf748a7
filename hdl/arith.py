"""Small arithmetic helpers shared by the gateware."""

__all__ = ["times_constant"]


def times_constant(value, factor):
    """``value * factor`` for a constant ``factor``, as shifts and adds (no multiplier)."""
    terms = [value << bit for bit in range(factor.bit_length()) if factor >> bit & 1]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total
