"""``systole board``: a Systole board (or its simulation) over the UART host bridge.

``systole board gemm --port DEVICE`` runs the same random GEMM as ``systole gemm`` (same
options, same seed, same output) on a board: the driver of ``systole gemm`` over the
framed UART protocol (docs/host-protocol.md) through pyserial. The configuration is read
from the board's ID registers; configuration options, when given, must match it.

``systole board sim`` serves a simulated board (``BoardTop`` under Verilator, driven by
``systole.sim.tb_board``) on a pseudo-terminal, so that ``systole board gemm --port
/dev/pts/N`` runs against it exactly as against a board.
"""

import asyncio
import sys
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["add_parser", "read_board_config"]

_CONFIG_OPTIONS = ("rows", "cols", "formats", "max_k", "bus_width", "sram_depth", "row_tiles",
                   "psum_depth")


def add_parser(subparsers):
    """Register ``board`` (with ``gemm`` and ``sim``) on the ``systole`` subparsers."""
    from .args import (add_config_arguments, add_job_arguments, add_memory_system_arguments,
                       add_shape_arguments, at_least, fraction, positive_seconds)

    board = subparsers.add_parser("board", help="a Systole board over its UART host bridge "
                                                "(gemm), or a simulated one (sim)")
    sub = board.add_subparsers(dest="board_command", required=True)

    p = sub.add_parser("gemm", help="a random GEMM on a board over its UART, checked "
                                    "against the golden model, with the counters")
    p.add_argument("--port", required=True, help="serial device of the board "
                                                 "(e.g. /dev/ttyUSB0, or /dev/pts/N of "
                                                 "`systole board sim`)")
    p.add_argument("--baud", type=at_least(1), default=115200,
                   help="bit rate (default %(default)s)")
    p.add_argument("--timeout", type=positive_seconds, default=1.0,
                   help="seconds of silence before a reply is given up and the request "
                        "retried (default %(default)s)")
    p.add_argument("--retries", type=at_least(0), default=8,
                   help="retries per request (default %(default)s)")
    add_shape_arguments(p)
    add_job_arguments(p, b_format="e5m2", simulator=False)
    p.add_argument("--json", help="write the report as JSON to this file")
    add_config_arguments(p)
    add_memory_system_arguments(p)
    # The configuration comes from the board; options given are checked against it.
    p.set_defaults(func=_cmd_board_gemm, **{name: None for name in _CONFIG_OPTIONS})

    p = sub.add_parser("sim", help="serve a simulated board on a pseudo-terminal, for "
                                   "`systole board gemm --port /dev/pts/N`")
    add_config_arguments(p, rows=4, cols=4)
    add_memory_system_arguments(p)
    p.add_argument("--memory-bytes", type=at_least(1), default=64 * 1024,
                   help="board memory (default %(default)s)")
    p.add_argument("--noise-flip", type=fraction, default=0.0,
                   help="probability that the line flips a bit of a byte (both ways)")
    p.add_argument("--noise-drop", type=fraction, default=0.0,
                   help="probability that the line loses a byte (both ways)")
    p.add_argument("--seed", type=at_least(0), default=1, help="seed of the line noise")
    p.add_argument("--ready-file", help="write the pseudo-terminal's name to this file")
    p.add_argument("--stop-file", help="stop when this file appears")
    p.add_argument("--max-seconds", type=positive_seconds, default=3600,
                   help="stop after this many seconds (default %(default)s)")
    p.add_argument("--log", help="write the simulator's log to this file")
    p.set_defaults(func=_cmd_board_sim)
    return board


async def read_board_config(port):
    """The SystoleConfig a board was built with, from its ID and CONFIG registers (all
    that the host's register map, tiling plans and reports depend on).

    Raises
    ------
    RuntimeError
        When the ID register does not hold the Systole magic.
    """
    from .config import SystoleConfig
    from .hdl.registers import systole_register_map

    regmap = systole_register_map(SystoleConfig())
    words = {}
    for name in ("ID", "CONFIG0", "CONFIG1", "CONFIG2", "CONFIG3", "CONFIG4"):
        words[name] = regmap[name].decode(await port.read32(regmap[name].address))
    if words["ID"]["magic"] != regmap["ID"].decode(regmap["ID"].reset)["magic"]:
        raise RuntimeError(f"the device does not identify as Systole (ID "
                           f"{words['ID']['magic']:#010x})")
    c0 = words["CONFIG0"]
    formats = tuple(name for bit, name in enumerate(("e4m3", "e5m2"))
                    if c0["formats"] >> bit & 1)
    return SystoleConfig(rows=c0["rows"], cols=c0["cols"], formats=formats,
                         max_k=words["CONFIG1"]["max_k"], bus_width=8 * c0["bus_bytes"],
                         sram_depth=words["CONFIG2"]["sram_depth"],
                         addr_width=words["CONFIG3"]["addr_width"],
                         counter_width=words["CONFIG3"]["counter_width"],
                         row_tiles=words["CONFIG4"]["row_tiles"],
                         psum_depth=words["CONFIG4"]["psum_depth"])


def _check_options(args, config):
    given = {name: getattr(args, name) for name in _CONFIG_OPTIONS if name != "formats"}
    given["formats"] = (tuple(sorted(f for f in args.formats.split(",") if f))
                        if args.formats else None)
    board = {name: getattr(config, name) for name in _CONFIG_OPTIONS if name != "formats"}
    board["formats"] = tuple(sorted(config.formats))
    wrong = [f"--{name.replace('_', '-')} {value} but the board has {board[name]}"
             for name, value in given.items() if value is not None and value != board[name]]
    if wrong:
        raise SystemExit("systole board gemm: the options do not match the board: "
                         + "; ".join(wrong))


async def _board_session(port, args, a, b):
    from .args import check_job
    from .sim.driver import SystoleDriver
    from .sim.uart_port import run_board_gemm

    info = await port.connect()
    config = await read_board_config(port)
    _check_options(args, config)
    check_job("board gemm", config, k=args.k, a_format=args.a_format, b_format=args.b_format,
              board=True)
    print(f"  on the board at {args.port} ({args.baud} baud): {config.rows}x{config.cols} "
          f"array, {config.bus_width}-bit AXI4, {info['memory_bytes']} bytes of memory",
          flush=True)
    driver = SystoleDriver(port, config)
    run = await run_board_gemm(driver, a, b, args.out_format, saturate=not args.no_saturate,
                               scale_exp=args.scale_exp)
    return info, config, run


def _cmd_board_gemm(args):
    import serial

    from .args import check_output
    from .gemm_report import gemm_operands, gemm_title, report_gemm
    from .sim.uart_port import BridgeError, BridgePort, SerialLink

    check_output("board gemm", "--json", args.json)
    a, b = gemm_operands(args)
    print(gemm_title(args, "board gemm"))
    try:
        device = serial.Serial(args.port, args.baud, timeout=args.timeout)
    except (serial.SerialException, ValueError) as error:
        raise SystemExit(f"systole board gemm: cannot open {args.port}: {error}")
    with device:
        port = BridgePort(SerialLink(device), timeout=args.timeout, retries=args.retries)
        try:
            info, config, run = asyncio.run(_board_session(port, args, a, b))
        except (BridgeError, RuntimeError, ValueError, TypeError) as error:
            print(f"systole board gemm: FAILED: {error}", file=sys.stderr)
            return 1
    stats = port.stats
    naks = ", ".join(f"{count} {name}" for name, count in stats.naks.items())
    status = report_gemm(
        args, config, a, b, run.c, run.counters, run.error,
        extra_json={"board": {"port": args.port, "baud": args.baud,
                              "memory_bytes": info["memory_bytes"],
                              "link": stats.as_dict()}})
    print(f"link: {stats.requests} requests, {stats.retries} retries"
          + (f" (NAKs: {naks})" if naks else "")
          + (f", {stats.bad_replies} damaged or missing replies" if stats.bad_replies else ""))
    return status


def _cmd_board_sim(args):
    from .args import config_from
    from .sim.tb_board import run_board

    config = config_from(args)
    noise = {}
    if args.noise_flip:
        noise["flip"] = args.noise_flip
    if args.noise_drop:
        noise["drop"] = args.noise_drop
    with tempfile.TemporaryDirectory() as work:
        ready = Path(args.ready_file) if args.ready_file else Path(work) / "pty"
        params = {"mode": "pty", "seed": args.seed, "noise": noise,
                  "ready_file": str(ready), "stop_file": args.stop_file,
                  "max_seconds": args.max_seconds}
        print(f"systole board sim: {config.rows}x{config.cols} board, "
              f"{args.memory_bytes} bytes of memory; building the simulator model "
              f"(cached after the first run) ...", flush=True)

        def announce():
            while not ready.exists():
                time.sleep(0.1)
            name = ready.read_text()
            print(f"systole board sim: serving the simulated board on {name}\n"
                  f"  try: systole board gemm --port {name} -M 16 -N 12 -K 40", flush=True)

        threading.Thread(target=announce, daemon=True).start()
        try:
            run_board(config, params, memory_bytes=args.memory_bytes, workdir=work,
                      log_file=args.log)
        except AssertionError as error:
            print(f"systole board sim: FAILED: {error}", file=sys.stderr)
            return 1
    return 0
