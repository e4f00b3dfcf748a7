"""Small arithmetic helpers shared by the gateware."""

from amaranth.hdl import Const, Value

__all__ = ["times_constant", "above_constant", "below_constant"]


def times_constant(value, factor):
    """``value * factor`` for a constant ``factor``, as shifts and adds (no multiplier)."""
    terms = [value << bit for bit in range(factor.bit_length()) if factor >> bit & 1]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def above_constant(value, bound):
    """``value > bound`` for a ``value`` (signed or unsigned) and a constant ``bound`` >= 0,
    as logic.

    Yosys maps a comparison to a carry chain, one logic cell per bit even against a
    constant; from the most significant bit down, a bit of the constant that is 0 makes
    the value larger if it is set, and a bit that is 1 needs it set for the rest to
    matter, so the comparison is a chain of ORs and ANDs.
    """
    value = Value.cast(value)
    if value.shape().signed:
        return ~value[-1] & above_constant(value[:-1], bound)
    if bound >> len(value):
        return Const(0)
    greater = Const(0)
    for bit in range(len(value)):           # least significant first: the chain's tail
        if bound >> bit & 1:
            greater = value[bit] & greater
        else:
            greater = value[bit] | greater
    return greater


def below_constant(value, bound):
    """``value < bound`` for a ``value`` (signed or unsigned) and a constant ``bound`` >= 0,
    as logic (see :func:`above_constant`)."""
    value = Value.cast(value)
    if bound > 0:
        return ~above_constant(value, bound - 1)
    return value[-1] if value.shape().signed else Const(0)
