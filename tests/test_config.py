"""The configuration object: validation messages and the derived accumulator widths."""

import pytest

from systole import SystoleConfig
from systole.formats import E4M3, E5M2, input_format, output_format


def test_default_accumulator_matches_the_contract():
    # DESIGN.md section 2: E5M2 x E5M2 products span 2**-32..2**32 (64 bits); with
    # max_k = 65536 that is 16 guard bits and one sign bit.
    config = SystoleConfig()
    assert (config.acc_lsb_exp, config.product_span, config.guard_bits) == (-32, 64, 16)
    assert config.acc_width == 64 + 16 + 1


@pytest.mark.parametrize("formats,span,lsb", [
    (("e4m3",), 36, -18),      # 2**-18 .. 2**18
    (("e5m2",), 64, -32),      # 2**-32 .. 2**32
    (("e4m3", "e5m2"), 64, -32),
])
def test_product_span_per_format_set(formats, span, lsb):
    config = SystoleConfig(formats=formats, max_k=4096)
    assert config.product_span == span
    assert config.acc_lsb_exp == lsb
    assert config.acc_width == span + 12 + 1


def test_format_table_matches_ofp8():
    assert (E4M3.max_finite, E5M2.max_finite) == (448.0, 57344.0)
    assert (E4M3.lsb_exp, E5M2.lsb_exp) == (-9, -16)
    assert (E4M3.emin, E5M2.emin) == (-6, -14)
    assert E5M2.inf_code == 0x7C and E4M3.inf_code is None


def test_formats_are_canonically_ordered():
    assert SystoleConfig(formats=("e5m2", "e4m3")) == SystoleConfig(formats=("e4m3", "e5m2"))


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(rows=0), ValueError, r"Array rows must be between 1 and 64, not 0"),
    (dict(cols=2.0), TypeError, r"Array cols must be an integer, not 2\.0"),
    (dict(rows=True), TypeError, r"Array rows must be an integer, not True"),
    (dict(formats="e4m3"), TypeError, r"formats must be a tuple of format names, not 'e4m3'"),
    (dict(formats=()), ValueError, r"formats must name at least one fp8 format"),
    (dict(formats=("e4m3", "fp16")), ValueError, r"Unknown fp8 format 'fp16'"),
    (dict(formats=("e4m3", "e4m3")), ValueError, r"formats lists a format twice"),
    (dict(max_k=0), ValueError, r"max_k must be between 1 and 2147483648, not 0"),
    (dict(counter_width=16), ValueError, r"counter_width must be between 32 and 64, not 16"),
    (dict(addr_width=11), ValueError, r"addr_width must be between 12 and 64, not 11"),
    (dict(addr_width=65), ValueError, r"addr_width must be between 12 and 64, not 65"),
    (dict(cols=3), ValueError, r"Array cols must divide the bus width in bytes \(8\) or be a "
                               r"multiple of it, not 3"),
    (dict(cols=2, sram_depth=8), ValueError,
     r"sram_depth must be at least 32 \(a bus word of k-steps in each of the 4 B banks\), not 8"),
    (dict(psum_depth=-1), ValueError, r"psum_depth must be between 0 and 65536, not -1"),
])
def test_bad_parameters_are_rejected(kwargs, error, message):
    with pytest.raises(error, match=message):
        SystoleConfig(**kwargs)


@pytest.mark.parametrize("addr_width,max_k,dim_width,k_width", [
    (17, 4096, 18, 13), (32, 65536, 32, 17), (64, 1 << 31, 32, 32), (12, 1, 13, 1)])
def test_datapath_widths(addr_width, max_k, dim_width, k_width):
    """M and N of an accepted job are at most 2**addr_width (each row of A, B, C is a byte
    or more below it); K at most max_k."""
    config = SystoleConfig(addr_width=addr_width, max_k=max_k)
    assert (config.dim_width, config.k_width) == (dim_width, k_width)
    assert min(1 << addr_width, (1 << 32) - 1) < 1 << config.dim_width
    assert max_k < 1 << config.k_width


def test_unknown_format_names():
    with pytest.raises(ValueError, match=r"Unknown input format 'fp32'"):
        input_format("fp32")
    with pytest.raises(ValueError, match=r"Unknown output format 'e3m4'"):
        output_format("e3m4")
