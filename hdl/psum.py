"""The partial-sum unit: exact accumulator states of a C block between K chunks."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from ..plan import PsumOp
from .arith import times_constant
from .blockram import NO_COLLISION, RegisteredReadPort
from .pe import AccumulatorState, LIMB_WIDTH

__all__ = ["PsumCommand", "PsumRowTag", "PartialSumUnit"]


def PsumCommand(config):
    """What a tile leaving the array does with its states, and its place in the block
    (which only the partial-sum ops use)."""
    return data.StructLayout({"op": PsumOp, "tile": range(max(2, config.psum_tiles))})


def PsumRowTag(config):
    """What travels beside a row of states: whether it is one, its row in the tile (rows
    leave bottom first), whether it is the tile's last, and the tile's command."""
    return data.StructLayout({"valid": 1, "row": range(config.rows), "last": 1,
                              "command": PsumCommand(config)})


def _exact_sum(m, a, b, name):
    """``a + b`` of two accumulator states (a Value of AccumulatorState each): the sums
    added exactly in limbs of at most LIMB_WIDTH bits (machine words in Verilator), the
    special flags merged as the PE merges a product's."""
    width = len(a.acc)
    total = []
    carry = 0
    for lo in range(0, width, LIMB_WIDTH):
        hi = min(lo + LIMB_WIDTH, width)
        limb = Signal(hi - lo + 1, name=f"{name}_{lo}")
        m.d.comb += limb.eq(a.acc.as_unsigned()[lo:hi] + b.acc.as_unsigned()[lo:hi] + carry)
        total.append(limb[:hi - lo])
        carry = limb[-1]
    return {"acc": Cat(*total), "nan": a.nan | b.nan, "pos_inf": a.pos_inf | b.pos_inf,
            "neg_inf": a.neg_inf | b.neg_inf, "neg_zero": a.neg_zero & b.neg_zero}


class PartialSumUnit(wiring.Component):
    """Two pipeline stages between the array's bottom row and the normalisers (none
    without a partial-sum SRAM: ``psum_depth`` 0).

    Each row of exact states a tile hands out comes with the tile's command
    (:class:`systole.plan.PsumOp`): OUT passes it on; WRITE stores it in the partial-sum
    SRAM at row ``tile * rows + row``; ADD adds the stored row to it and stores the sum;
    ADD_OUT adds and passes the sum on. The SRAM is read in stage 1 and written from
    stage 2; a row's address recurs only a whole chunk of the block later, so no read
    ever meets a pending write of the same row. Everything moves on ``advance``.

    Attributes
    ----------
    advance : In(1)
    states : In(ArrayLayout(AccumulatorState, cols))
    tag : In(PsumRowTag)
    out_states : Out(ArrayLayout(AccumulatorState, cols))
    out_tag : Out(PsumRowTag)
        ``valid`` only for rows that go on (OUT, ADD_OUT).
    settled : Out(PsumRowTag)
        The stage-2 tag of every row (for the array's count of tiles in flight).
    psum_read, psum_write : Out(range(psum_row_bytes + 1))
        Partial-sum SRAM bytes read / written this cycle.
    """

    def __init__(self, config):
        self._config = config
        states = data.ArrayLayout(AccumulatorState(config), config.cols)
        super().__init__({
            "advance": In(1),
            "states": In(states),
            "tag": In(PsumRowTag(config)),
            "out_states": Out(states),
            "out_tag": Out(PsumRowTag(config)),
            "settled": Out(PsumRowTag(config)),
            "psum_read": Out(range(config.psum_row_bytes + 1)),
            "psum_write": Out(range(config.psum_row_bytes + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        config = self._config
        states = data.ArrayLayout(AccumulatorState(config), config.cols)
        advance = self.advance
        if not config.psum_depth:
            # Nothing to store: every row passes straight on (the plans of such a build
            # send every tile OUT), and the stages are left out.
            m.d.comb += [self.out_states.eq(self.states), self.out_tag.eq(self.tag),
                         self.settled.eq(self.tag)]
            return m
        stage1 = Signal(states)
        tag1 = Signal(PsumRowTag(config))
        stage2 = Signal(states)
        tag2 = Signal(PsumRowTag(config))
        with m.If(advance):
            m.d.sync += [stage1.eq(self.states), tag1.eq(self.tag), tag2.eq(tag1)]
        adds = (tag1.command.op == PsumOp.ADD) | (tag1.command.op == PsumOp.ADD_OUT)
        mem = memory.Memory(shape=states, depth=config.psum_depth, init=[],
                            attrs=NO_COLLISION)
        m.submodules.sram = mem
        address = lambda tag: (times_constant(tag.command.tile, config.rows)
                               + tag.row)[:(config.psum_depth - 1).bit_length() or 1]
        reader = RegisteredReadPort(m, mem, name="psum_read")
        m.d.comb += [reader.addr.eq(address(self.tag)), reader.en.eq(advance)]
        stored = data.View(states, reader.data)
        totals = [_exact_sum(m, stage1[j], stored[j], f"psum_sum_{j}")
                  for j in range(config.cols)]
        with m.If(advance):
            for j, total in enumerate(totals):
                with m.If(adds):
                    m.d.sync += [getattr(stage2[j], name).eq(value)
                                 for name, value in total.items()]
                with m.Else():
                    m.d.sync += stage2[j].eq(stage1[j])
        writer = mem.write_port()
        writes = (tag2.command.op == PsumOp.WRITE) | (tag2.command.op == PsumOp.ADD)
        m.d.comb += [writer.addr.eq(address(tag2)), writer.data.eq(stage2),
                     writer.en.eq(advance & tag2.valid & writes)]
        with m.If(advance & tag1.valid & adds):
            m.d.comb += self.psum_read.eq(config.psum_row_bytes)
        with m.If(advance & tag2.valid & writes):
            m.d.comb += self.psum_write.eq(config.psum_row_bytes)
        passes = (tag2.command.op == PsumOp.OUT) | (tag2.command.op == PsumOp.ADD_OUT)
        m.d.comb += [self.out_states.eq(stage2), self.out_tag.eq(tag2),
                     self.out_tag.valid.eq(tag2.valid & passes), self.settled.eq(tag2)]
        return m
