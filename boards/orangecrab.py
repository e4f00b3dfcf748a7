"""OrangeCrab r0.2 with an ECP5 LFE5U-85F: block RAM as memory, PLL from 48 MHz.

The OrangeCrab has no UART chip: the host bridge uses Feather pins 0 (RX, into the FPGA)
and 1 (TX) with a 3.3 V USB-serial adapter. Its bootloader loads bitstreams over USB DFU,
which wants a DFU suffix on the ``.bit``; amaranth-boards adds it with ``dfu-suffix`` (from
dfu-util, not on PyPI), so this board appends the same 16 bytes in Python instead.
"""

import struct
import zlib

from amaranth.build import Attrs
from amaranth_boards.orangecrab_r0_2 import OrangeCrabR0_2_85FPlatform
from amaranth_boards.resources import UARTResource

from .build import Board, connect_uart_and_leds, ecp5_pll_domain

__all__ = ["BOARD", "OrangeCrab85F", "dfu_suffix"]

#: USB IDs of the OrangeCrab's DFU bootloader (as amaranth-boards passes to dfu-suffix).
DFU_VENDOR, DFU_PRODUCT = 0x1209, 0x5AF0


def dfu_suffix(data, *, vendor, product, device=0xFFFF):
    """The 16-byte DFU 1.0 file suffix dfu-suffix appends to ``data``.

    bcdDevice, idProduct, idVendor, bcdDFU 1.00, "UFD", length 16, then the CRC-32 of the
    file and the first 12 suffix bytes as dfu-util computes it (no final inversion).
    """
    head = struct.pack("<HHHH", device, product, vendor, 0x0100) + b"UFD" + bytes([16])
    crc = zlib.crc32(data + head) ^ 0xFFFFFFFF
    return head + struct.pack("<I", crc)


class _Platform(OrangeCrabR0_2_85FPlatform):
    @property
    def required_tools(self):
        return [tool for tool in super().required_tools if tool != "dfu-suffix"]

    @property
    def command_templates(self):
        return [template for template in super().command_templates
                if "dfu-suffix" not in template]


class OrangeCrab85F(Board):
    """OrangeCrab r0.2 85F: RGB LED blue = busy, green = done, red = error."""
    name = "orangecrab-85f"
    family = "ecp5"
    target_mhz = 100.0
    config = dict(rows=8, cols=8)
    # 64 KiB of board memory (32 EBR): the partial-sum SRAM takes 76 EBR.
    memory_bytes = 64 * 1024

    def platform(self):
        platform = _Platform()
        platform.add_resources([
            UARTResource(0, rx="0", tx="1", conn=("io", 0), attrs=Attrs(IO_TYPE="LVCMOS33")),
        ])
        return platform

    def clocking(self, m, platform):
        ecp5_pll_domain(m, platform, out_mhz=self.target_mhz)

    def connect(self, m, platform, top):
        rgb = platform.request("rgb_led", 0, dir="-")
        connect_uart_and_leds(m, platform, top, platform.request("uart", 0, dir="-"),
                              [rgb.b, rgb.g, rgb.r])

    def after_build(self, build_dir, name):
        path = super().after_build(build_dir, name)
        data = path.read_bytes()
        if data[-8:-4] != b"UFD\x10":     # not suffixed yet
            path.write_bytes(data + dfu_suffix(data, vendor=DFU_VENDOR, product=DFU_PRODUCT))
        return path


BOARD = OrangeCrab85F()
