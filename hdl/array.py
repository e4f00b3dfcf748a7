"""The R x C output-stationary systolic array with its skew, drain and normalisers."""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .fp8 import Fp8Format, OutFormat
from .normalizer import SCALE_SHAPE, Normalizer
from .pe import ProcessingElement

__all__ = ["JobSettings", "OperandsLayout", "ResultsLayout", "SystolicArray"]


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
    beat, into one :class:`Normalizer` per column: a pipeline of
    ``Normalizer.LATENCY`` register stages, beside which each row's valid bit, index and
    ``last`` mark travel; a row leaves on ``results`` that many advancing cycles after it
    left the bottom row.

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
    results : Out(stream.Signature(ResultsLayout(config)))
    job : In(JobSettings)
    idle : Out(1)
        No tile is open, in flight, draining or in the normaliser pipeline.
    advance : Out(1)
        The array moved this cycle (for the utilisation counters).
    """

    def __init__(self, config):
        self._config = config
        super().__init__({
            "operands": In(stream.Signature(OperandsLayout(config))),
            "results": Out(stream.Signature(ResultsLayout(config))),
            "job": In(JobSettings),
            "idle": Out(1),
            "advance": Out(1),
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

        # Drain: starts once the bottom-right PE (the last to finish) has closed the tile.
        draining = Signal()
        drained = Signal(range(rows))     # rows already handed out
        with m.If(advance):
            with m.If(pes[rows - 1][cols - 1].tile_done):
                m.d.sync += [draining.eq(1), drained.eq(0)]
            with m.Elif(draining):
                m.d.sync += drained.eq(drained + 1)
                with m.If(drained == rows - 1):
                    m.d.sync += draining.eq(0)
        for i in range(1, rows):
            # Row i only needs to shift while rows above it still hold results.
            for j in range(cols):
                m.d.comb += pes[i][j].shift.eq(draining & (drained < i))

        # The rows handed out enter the normaliser pipeline; their position and validity
        # travel beside it through as many registers, and leave on ``results``.
        for j in range(cols):
            norm = Normalizer(config)
            m.submodules[f"normalizer_{j}"] = norm
            m.d.comb += [
                norm.advance.eq(advance),
                norm.state.eq(pes[rows - 1][j].result),
                norm.out_format.eq(self.job.out_format),
                norm.saturate.eq(self.job.saturate),
                norm.scale_exp.eq(self.job.scale_exp),
                self.results.payload.c[j].eq(norm.bits),
            ]
        handed_out = Signal(_RowTag(config))
        m.d.comb += [
            handed_out.valid.eq(draining),
            handed_out.row.eq(rows - 1 - drained),
            handed_out.last.eq(drained == rows - 1),
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

        # Tiles accepted but not yet fully drained, and whether one is half-way in.
        in_flight = Signal(range(8))
        tile_open = Signal()
        closing = self.results.valid & self.results.ready & self.results.payload.last
        opening = accepted & beat.last
        m.d.sync += in_flight.eq(in_flight + opening - closing)
        with m.If(accepted):
            m.d.sync += tile_open.eq(~beat.last)
        m.d.comb += self.idle.eq((in_flight == 0) & ~tile_open)
        return m
