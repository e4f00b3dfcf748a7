"""iCEBreaker (iCE40UP5K-SG48): the accelerator with the four SPRAMs as its memory.

The UP5K has 5280 logic cells, 30 block RAMs of 4 Kib, 4 SPRAMs of 32 KiB and 8 DSPs. The
128 KiB of SPRAM hold A, B and C; the block RAMs stay free for the operand SRAMs. The
board clock (12 MHz) runs the design directly: nothing larger than a few PEs could close
timing much above it on this device, and the UART divisor is exact at 12 MHz.

Measured (docs/boards.md): the default, a 1x1 array, fits (5,141 of the 5,280 logic
cells) and meets the 12 MHz clock (Fmax 17.2 MHz). A 2x2 or the issue's 4x4 target does
not fit: one PE and its column's normaliser take about 790 cells; ``systole build --board
icebreaker --rows 4 --cols 4`` reports by how much.
"""

from amaranth_boards.icebreaker import ICEBreakerPlatform

from .build import Board, connect_uart_and_leds, ice40_pll_domain
from .spram import SPRAMMemory

__all__ = ["BOARD", "ICEBreaker"]


class ICEBreaker(Board):
    """iCEBreaker v1.0: UART on the FTDI's second channel; LEDs red = error, green = done,
    break-off-PMOD LED 2 (red, L1) = busy."""
    name = "icebreaker"
    family = "ice40"
    device_ffs = 5280
    target_mhz = 12.0
    # The smallest machine the configuration allows, and the largest array that fits: a
    # 1x1 array, E4M3 only (49-bit instead of 81-bit accumulators), K up to 4096, 32-bit
    # counters and bus, short bursts, two outstanding reads (SPRAM answers in one cycle),
    # and 17-bit addresses: the 128 KiB of SPRAM, which narrows every address and M/N
    # register.
    config = dict(rows=1, cols=1, formats=("e4m3",), max_k=4096, counter_width=32,
                  bus_width=32, addr_width=17, max_burst=16, max_outstanding=2,
                  sram_depth=256, row_tiles=1, psum_depth=0)
    memory_bytes = 128 * 1024
    # Yosys maps multipliers to the UP5K's SB_MAC16 only when asked.
    synth_opts = "-dsp"

    def platform(self):
        platform = ICEBreakerPlatform()
        platform.add_resources(platform.break_off_pmod)
        return platform

    def memory(self):
        return SPRAMMemory

    def clocking(self, m, platform):
        if self.target_mhz != 12.0:      # `systole build --clock-mhz`: through the PLL
            ice40_pll_domain(m, platform, out_mhz=self.target_mhz)

    def connect(self, m, platform, top):
        connect_uart_and_leds(m, platform, top, platform.request("uart", 0, dir="-"), [
            platform.request("led", 2, dir="-"),       # break-off PMOD, red L1
            platform.request("led_g", 0, dir="-"),
            platform.request("led_r", 0, dir="-"),
        ])

BOARD = ICEBreaker()
