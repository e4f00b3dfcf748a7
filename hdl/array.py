"""The R x C output-stationary systolic array with its skew, drain and normalisers."""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..plan import PsumOp
from .fp8 import Fp8Format, OutFormat
from .normalizer import SCALE_SHAPE, Normalizer
from .pe import ProcessingElement
from .psum import PartialSumUnit, PsumCommand, PsumRowTag

__all__ = ["JobSettings", "OperandsLayout", "ResultsLayout", "PsumCommand", "SystolicArray"]


#: Per-job numeric settings; they must not change while the array holds data.
JobSettings = data.StructLayout({
    "a_format": Fp8Format,
    "b_format": Fp8Format,
    "out_format": OutFormat,
    "saturate": 1,
    "scale_exp": SCALE_SHAPE,
})


def OperandsLayout(config):
    """One k-step of a tile: column k of the A tile, row k of the B tile."""
    return data.StructLayout({
        "a": data.ArrayLayout(8, config.rows),
        "b": data.ArrayLayout(8, config.cols),
        "last": 1,
    })


def ResultsLayout(config):
    """One row of a finished C tile, already rounded to the output format.

    Rows leave bottom first: ``row`` counts down from ``rows - 1`` to 0, and ``last`` marks
    row 0, the end of the tile.
    """
    return data.StructLayout({
        "row": range(config.rows),
        "last": 1,
        "c": data.ArrayLayout(32, config.cols),
    })


def _RowTag(config):
    """What travels beside a row in the normaliser pipeline."""
    return data.StructLayout({"valid": 1, "row": range(config.rows), "last": 1})


class SystolicArray(wiring.Component):
    """Output-stationary array of :class:`ProcessingElement`.

    Each accepted ``operands`` beat is one k-step of a tile. A enters row i after i cycles
    of skew and B enters column j after j cycles, so PE (i, j) sees a[i, k] and b[k, j]
    together. The beat marked ``last`` closes the tile: every PE moves its exact sum into
    its result register and the next tile follows without a bubble. Once the bottom-right
    PE has closed the tile, the result registers shift down the columns, one row per
    beat, through the :class:`~systole.hdl.psum.PartialSumUnit` (two stages with a
    partial-sum SRAM, none without: the tile's command from ``psum``, taken as its drain
    starts, stores the rows, adds them into the stored partial sums, or passes them on)
    into one :class:`Normalizer` per column: a pipeline of ``Normalizer.LATENCY`` register
    stages, beside which each row's valid bit, index and ``last`` mark travel; a row that
    goes on leaves on ``results`` ``2 + Normalizer.LATENCY`` advancing cycles after it left
    the bottom row (``Normalizer.LATENCY`` without a partial-sum SRAM).

    The whole array (skew, PEs, drain, normaliser pipeline) advances together, and holds
    while ``results`` is valid but not ready, so back-pressure never loses data. Tiles shorter than
    ``rows + cols`` k-steps are spaced out by holding ``operands.ready`` low before their
    ``last`` beat, so a tile never overtakes the drain of the previous one.

    Parameters
    ----------
    config : SystoleConfig

    Attributes
    ----------
    operands : In(stream.Signature(OperandsLayout(config)))
    psum : In(stream.Signature(PsumCommand(config)))
        One command per tile, in the order the tiles close.
    results : Out(stream.Signature(ResultsLayout(config)))
    job : In(JobSettings)
    idle : Out(1)
        No tile is open, in flight, draining or in the normaliser pipeline.
    advance : Out(1)
        The array moved this cycle (for the utilisation counters).
    psum_read, psum_write : Out
        Partial-sum SRAM bytes read / written this cycle.
    """

    def __init__(self, config):
        self._config = config
        super().__init__({
            "operands": In(stream.Signature(OperandsLayout(config))),
            "psum": In(stream.Signature(PsumCommand(config))),
            "results": Out(stream.Signature(ResultsLayout(config))),
            "job": In(JobSettings),
            "idle": Out(1),
            "advance": Out(1),
            "psum_read": Out(range(config.psum_row_bytes + 1)),
            "psum_write": Out(range(config.psum_row_bytes + 1)),
        })

    @staticmethod
    def min_tile_interval(config):
        """Fewest advancing cycles between the ``last`` beats of two tiles."""
        return config.rows + config.cols

    def elaborate(self, platform):
        m = Module()
        config = self._config
        rows, cols = config.rows, config.cols

        advance = self.advance
        m.d.comb += advance.eq(~self.results.valid | self.results.ready)

        # Space the last beats of successive tiles so that PE (i, j) closes tile n + 1 only
        # after the drain has carried tile n's row i past it.
        interval = self.min_tile_interval(config)
        since_last = Signal(range(interval + 1), init=interval)
        spaced = since_last == interval
        beat = self.operands.payload
        m.d.comb += self.operands.ready.eq(advance & (~beat.last | spaced))
        accepted = self.operands.valid & self.operands.ready
        with m.If(advance):
            with m.If(accepted & beat.last):
                m.d.sync += since_last.eq(1)
            with m.Elif(~spaced):
                m.d.sync += since_last.eq(since_last + 1)

        pes = [[ProcessingElement(config) for _ in range(cols)] for _ in range(rows)]
        for i in range(rows):
            for j in range(cols):
                pe = pes[i][j]
                m.submodules[f"pe_{i}_{j}"] = pe
                m.d.comb += [
                    pe.advance.eq(advance),
                    pe.a_format.eq(self.job.a_format),
                    pe.b_format.eq(self.job.b_format),
                ]
                if j > 0:
                    m.d.comb += pe.a_in.eq(pes[i][j - 1].a_out)
                if i > 0:
                    m.d.comb += [pe.b_in.eq(pes[i - 1][j].b_out),
                                 pe.drain_in.eq(pes[i - 1][j].result)]

        # Input skew: row i of A (carrying valid/last) and column j of B wait i and j cycles.
        for i in range(rows):
            stage = Signal(pes[0][0].a_in.shape(), name=f"a_skew_{i}_in")
            m.d.comb += [stage.valid.eq(accepted), stage.last.eq(beat.last),
                         stage.bits.eq(beat.a[i])]
            for d in range(i):
                delayed = Signal.like(stage, name=f"a_skew_{i}_{d}")
                with m.If(advance):
                    m.d.sync += delayed.eq(stage)
                stage = delayed
            m.d.comb += pes[i][0].a_in.eq(stage)
        for j in range(cols):
            stage = beat.b[j]
            for d in range(j):
                delayed = Signal(8, name=f"b_skew_{j}_{d}")
                with m.If(advance):
                    m.d.sync += delayed.eq(stage)
                stage = delayed
            m.d.comb += pes[0][j].b_in.eq(stage)

        # Drain: starts once the bottom-right PE (the last to finish) has closed the tile,
        # with the tile's partial-sum command (the tiler queues it before the tile's first
        # beat, so it is there).
        draining = Signal()
        drained = Signal(range(rows))     # rows already handed out
        command = Signal(PsumCommand(config))
        closes = pes[rows - 1][cols - 1].tile_done
        m.d.comb += self.psum.ready.eq(closes)
        with m.If(advance):
            with m.If(closes):
                m.d.sync += [draining.eq(1), drained.eq(0), command.eq(self.psum.payload)]
            with m.Elif(draining):
                m.d.sync += drained.eq(drained + 1)
                with m.If(drained == rows - 1):
                    m.d.sync += draining.eq(0)
        for i in range(1, rows):
            # Row i only needs to shift while rows above it still hold results.
            for j in range(cols):
                m.d.comb += pes[i][j].shift.eq(draining & (drained < i))

        # The rows handed out pass the partial-sum unit, then the normalisers; their
        # position and validity travel beside the normalisers through as many registers,
        # and leave on ``results``.
        m.submodules.psum_unit = psum_unit = PartialSumUnit(config)
        m.d.comb += [
            psum_unit.advance.eq(advance),
            psum_unit.tag.valid.eq(draining),
            psum_unit.tag.row.eq(rows - 1 - drained),
            psum_unit.tag.last.eq(drained == rows - 1),
            psum_unit.tag.command.eq(command),
            self.psum_read.eq(psum_unit.psum_read),
            self.psum_write.eq(psum_unit.psum_write),
        ]
        for j in range(cols):
            m.d.comb += psum_unit.states[j].eq(pes[rows - 1][j].result)
            norm = Normalizer(config)
            m.submodules[f"normalizer_{j}"] = norm
            m.d.comb += [
                norm.advance.eq(advance),
                norm.state.eq(psum_unit.out_states[j]),
                norm.out_format.eq(self.job.out_format),
                norm.saturate.eq(self.job.saturate),
                norm.scale_exp.eq(self.job.scale_exp),
                self.results.payload.c[j].eq(norm.bits),
            ]
        handed_out = Signal(_RowTag(config))
        m.d.comb += [
            handed_out.valid.eq(psum_unit.out_tag.valid),
            handed_out.row.eq(psum_unit.out_tag.row),
            handed_out.last.eq(psum_unit.out_tag.last),
        ]
        tag = handed_out
        for stage in range(Normalizer.LATENCY):
            delayed = Signal(_RowTag(config), name=f"row_tag_{stage + 1}")
            with m.If(advance):
                m.d.sync += delayed.eq(tag)
            tag = delayed
        m.d.comb += [
            self.results.valid.eq(tag.valid),
            self.results.payload.row.eq(tag.row),
            self.results.payload.last.eq(tag.last),
        ]

        # Tiles accepted but not yet fully drained, and whether one is half-way in. A tile
        # that goes on closes on ``results``; one whose states stay in the partial-sum
        # SRAM closes as its last row leaves the unit.
        in_flight = Signal(range(8))
        tile_open = Signal()
        settled = psum_unit.settled
        stored = (settled.valid & settled.last & advance
                  & ((settled.command.op == PsumOp.WRITE) | (settled.command.op == PsumOp.ADD)))
        closing = self.results.valid & self.results.ready & self.results.payload.last
        opening = accepted & beat.last
        m.d.sync += in_flight.eq(in_flight + opening - closing - stored)
        with m.If(accepted):
            m.d.sync += tile_open.eq(~beat.last)
        m.d.comb += self.idle.eq((in_flight == 0) & ~tile_open)
        return m
