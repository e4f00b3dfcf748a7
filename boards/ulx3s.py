"""ULX3S with an ECP5 LFE5U-85F: block RAM as the accelerator's memory, PLL to 100 MHz.

The 85F has about 84k LUT4s, 208 block RAMs of 18 Kib (DP16KD) and 156 18x18
multipliers. The board's 25 MHz oscillator drives an EHXPLLL. openFPGALoader is needed only
to program the board (``systole build`` does not), so the platform does not require it.
"""

from amaranth_boards.ulx3s import ULX3S_85F_Platform

from .build import Board, connect_uart_and_leds, ecp5_pll_domain

__all__ = ["BOARD", "ULX3S85F"]


class _Platform(ULX3S_85F_Platform):
    @property
    def required_tools(self):
        return [tool for tool in super().required_tools if tool != "openFPGALoader"]


class ULX3S85F(Board):
    """ULX3S 85F: UART through the FTDI (us1 USB port); LEDs D0 busy, D1 done, D2 error."""
    name = "ulx3s-85f"
    family = "ecp5"
    target_mhz = 100.0
    config = dict(rows=8, cols=8)
    # 64 KiB of board memory (32 EBR): the partial-sum SRAM takes 76 EBR.
    memory_bytes = 64 * 1024

    def platform(self):
        return _Platform()

    def clocking(self, m, platform):
        ecp5_pll_domain(m, platform, out_mhz=self.target_mhz)

    def connect(self, m, platform, top):
        connect_uart_and_leds(m, platform, top, platform.request("uart", 0, dir="-"),
                              [platform.request("led", i, dir="-") for i in range(3)])

BOARD = ULX3S85F()
