"""Declarative control/status registers and their AXI4-Lite bank.

A small in-house register API in the spirit of amaranth-soc. Registers are declared once,
as classes whose annotations are fields (or built from a dict when the fields depend on
the configuration); a :class:`RegisterMap` lays them out at 4-byte aligned addresses;
:class:`CSRBank` turns the map into gateware with an AXI4-Lite subordinate port; and
``systole.regmap`` turns the same map into Markdown, a C header and JSON. ::

    class Status(Register):
        \"\"\"Job status.\"\"\"
        busy: Field(R, 1, desc="A job is running")
        done: Field(W1C, 1, desc="A job ended; write 1 to clear")

    regmap = RegisterMap(addr_width=12)
    regmap.add("STATUS", Status())
    regmap.add("SCRATCH", Register({"value": Field(RW, 32)}, description="Scratch"))
    regmap.add_counter("cycles", width=64, description="Clock cycles")
    bank = CSRBank(regmap)      # bank.status.busy, bank.status.done_set, bank.cycles ...

Access types (:class:`Access`):

``R``
    Read-only; the hardware drives the value every cycle, or the field is a build-time
    constant (``const=``). Software writes are ignored.
``RW``
    Read/write storage; the hardware sees the current value.
``W1C``
    Sticky bits: a hardware ``set`` pulse sets a bit, software writing 1 clears it, writing
    0 leaves it. A set and a clear in the same cycle leave the bit set, so no event is lost.
``W``
    Write-only action: writing a 1 gives the hardware a one-cycle pulse on that bit;
    reads return 0.
"""

import enum
import inspect
import keyword
import re

from amaranth.hdl import Cat, Const, Module, Mux, Shape, ShapeCastable, Signal, Value
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from .axi import RESP_OKAY, RESP_SLVERR, AXI4LiteSignature
from .blockram import NO_COLLISION, RegisteredReadPort

__all__ = ["Access", "R", "RW", "W1C", "W", "Field", "Register", "Counter", "RegisterMap",
           "FetchSignature", "CSRBank", "REGISTER_WIDTH"]

#: Every register is one 32-bit AXI4-Lite word.
REGISTER_WIDTH = 32

_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_REGISTER_NAME = re.compile(r"[A-Z][A-Z0-9_]*\Z")
# Attribute names of Amaranth interface objects that a port may not shadow.
_RESERVED_PORT_NAMES = {"signature"}


class Access(enum.Enum):
    """How software and hardware see a field (see the module docstring)."""
    R = "R"
    RW = "RW"
    W1C = "W1C"
    W = "W"

    @classmethod
    def cast(cls, value):
        if isinstance(value, cls):
            return value
        if isinstance(value, str) and value.upper() in cls.__members__:
            return cls[value.upper()]
        raise ValueError(f"Field access must be one of R, RW, W1C, W, not {value!r}")


R, RW, W1C, W = Access.R, Access.RW, Access.W1C, Access.W


def _cast_shape(shape):
    if isinstance(shape, bool) or (isinstance(shape, int) and shape < 1):
        raise ValueError(f"Field width must be a positive integer, not {shape!r}")
    if isinstance(shape, int):
        return Shape(shape)
    try:
        cast = Shape.cast(shape)
    except TypeError:
        raise TypeError(f"Field shape must be a positive integer width or an Amaranth shape, "
                        f"not {shape!r}") from None
    if cast.width < 1:
        raise ValueError(f"Field width must be a positive integer, not {cast.width!r}")
    return cast


def _value_bits(shape, value, what):
    """Raw (unsigned) bits of ``value`` in a field of ``shape``, or a ValueError."""
    cast = Shape.cast(shape)
    if isinstance(shape, ShapeCastable):
        try:
            const = Const.cast(shape.const(value))
        except (TypeError, ValueError):
            raise ValueError(f"{what} {value!r} is not a valid {shape!r}") from None
        return const.value & ((1 << cast.width) - 1)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an integer, not {value!r}")
    low, high = (-(1 << (cast.width - 1)), 1 << (cast.width - 1)) if cast.signed \
        else (0, 1 << cast.width)
    if not low <= value < high:
        raise ValueError(f"{what} {value!r} does not fit in a field of shape {cast!r}")
    return value & ((1 << cast.width) - 1)


class Field:
    """One field of a register.

    Parameters
    ----------
    access : Access or str
        ``R``, ``RW``, ``W1C`` or ``W``.
    shape : int or shape-castable
        Width in bits, or an Amaranth shape (``signed(8)``, an ``enum.Enum`` with a shape)
        for R and RW fields; the hardware port then has that shape. W1C and W fields are
        bit sets and take a plain width.
    offset : int, optional
        Bit position of the field's LSB. By default a field starts right after the
        previous one (fields are packed LSB first).
    reset : int or enum member, optional
        Value after reset, for RW and W1C fields (default 0).
    const : int or enum member, optional
        Makes an R field a build-time constant: it reads as ``const`` and has no port.
    desc : str
        One-line description, used by the generated documentation.

    Attributes
    ----------
    name, offset : str, int
        Set once the field is placed in a register (``None`` before).
    width : int
    reset_bits : int or None
        Raw value after reset; ``None`` for R fields that the hardware drives.

    Raises
    ------
    TypeError, ValueError
        With a message naming the offending argument.
    """

    def __init__(self, access, shape, *, offset=None, reset=None, const=None, desc=""):
        self.access = Access.cast(access)
        self.shape = shape
        cast = _cast_shape(shape)
        self.width = cast.width
        self.signed = cast.signed
        if self.access in (W1C, W) and not isinstance(shape, int):
            raise TypeError(f"{self.access.name} fields are bit sets; give an integer width, "
                            f"not {shape!r}")
        if offset is not None and (isinstance(offset, bool) or not isinstance(offset, int)
                                   or offset < 0):
            raise ValueError(f"Field offset must be a non-negative integer, not {offset!r}")
        self.offset = offset
        if reset is not None and self.access not in (RW, W1C):
            hint = "give a constant with const=" if self.access is R else "it reads as 0"
            raise ValueError(f"{self.access.name} fields have no reset value ({hint})")
        if const is not None and self.access is not R:
            raise ValueError(f"Only R fields can be constants, not {self.access.name} fields")
        if const is not None:
            self.reset_bits = _value_bits(shape, const, "Constant")
        elif self.access is R:
            self.reset_bits = None
        elif reset is not None:
            self.reset_bits = _value_bits(shape, reset, "Reset value")
        elif isinstance(shape, ShapeCastable):
            self.reset_bits = Const.cast(shape.const(None)).value & ((1 << self.width) - 1)
        else:
            self.reset_bits = 0
        self.reset = reset
        self.const = const
        if not isinstance(desc, str):
            raise TypeError(f"Field description must be a string, not {desc!r}")
        self.desc = desc
        self.name = None

    @property
    def bits(self):
        """``(msb, lsb)`` of a placed field."""
        return self.offset + self.width - 1, self.offset

    @property
    def mask(self):
        """Mask of a placed field in register position."""
        return ((1 << self.width) - 1) << self.offset

    @property
    def enum(self):
        """The enumeration of an enum-shaped field, else None."""
        if isinstance(self.shape, type) and issubclass(self.shape, enum.Enum):
            return self.shape
        return None

    def _placed(self, name, offset):
        placed = object.__new__(Field)
        placed.__dict__.update(self.__dict__)
        placed.name = name
        placed.offset = offset
        return placed

    def __repr__(self):
        where = f" {self.name!r} at bits {self.bits[0]}:{self.bits[1]}" if self.name else ""
        return f"Field({self.access.name}, {self.shape!r}){where}"


class Register:
    """A 32-bit register: a set of fields, declared by class annotations or a dict.

    Declare fixed registers as classes (the docstring's first line is the description)::

        class Ctrl(Register):
            \"\"\"Control.\"\"\"
            start: Field(W, 1, desc="Start a job")

    and registers whose fields depend on parameters as instances::

        Register({"rows": Field(R, 8, const=config.rows)}, description="Array shape")

    Parameters
    ----------
    fields : dict of str to Field, optional
        Only when the class declares no fields.
    description : str, optional
        Defaults to the first line of the class docstring.

    Attributes
    ----------
    name, address : str, int
        Set when the register is added to a :class:`RegisterMap` (``None`` before).
    fields : dict of str to Field
        Placed fields, in declaration order.
    counter : Counter or None
        The 64-bit counter this register is one half of.

    Raises
    ------
    TypeError, ValueError
        For a bad field name, overlapping fields or fields beyond bit 31.
    """

    _declared_fields = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        declared = dict(cls._declared_fields)
        for name, annotation in inspect.get_annotations(cls).items():
            if isinstance(annotation, str):
                raise TypeError(f"Annotation of {name!r} in register class {cls.__name__} is a "
                                f"string; declare fields as `{name}: Field(...)` without "
                                f"`from __future__ import annotations`")
            if not isinstance(annotation, Field):
                raise TypeError(f"Annotation of {name!r} in register class {cls.__name__} "
                                f"must be a Field, not {annotation!r}")
            declared[name] = annotation
        cls._declared_fields = declared

    def __init__(self, fields=None, *, description=None):
        if fields is None:
            fields = type(self)._declared_fields
        elif type(self)._declared_fields:
            raise TypeError(f"Register class {type(self).__name__} declares its fields; "
                            f"do not pass fields to it")
        if not isinstance(fields, dict):
            raise TypeError(f"Register fields must be a dict of names to Field, not {fields!r}")
        if description is None:
            doc = type(self).__doc__ if type(self) is not Register else None
            description = inspect.cleandoc(doc).splitlines()[0] if doc else ""
        if not isinstance(description, str):
            raise TypeError(f"Register description must be a string, not {description!r}")
        self.description = description
        self.name = None
        self.address = None
        self.counter = None
        self.fields = {}
        cursor = 0
        for name, field in fields.items():
            if not isinstance(name, str) or not _FIELD_NAME.match(name) \
                    or keyword.iskeyword(name) or name in _RESERVED_PORT_NAMES:
                raise ValueError(f"Field name must be a lower-case identifier, not {name!r}")
            if not isinstance(field, Field):
                raise TypeError(f"Field {name!r} must be a Field, not {field!r}")
            offset = cursor if field.offset is None else field.offset
            placed = field._placed(name, offset)
            msb, lsb = placed.bits
            if msb >= REGISTER_WIDTH:
                raise ValueError(f"Field {name!r} (bits {msb}:{lsb}) does not fit in a "
                                 f"{REGISTER_WIDTH}-bit register")
            for other in self.fields.values():
                if placed.mask & other.mask:
                    raise ValueError(f"Field {name!r} (bits {msb}:{lsb}) overlaps field "
                                     f"{other.name!r} (bits {other.bits[0]}:{other.bits[1]})")
            self.fields[name] = placed
            cursor = msb + 1
        for field in self.fields.values():
            if field.access is W1C and f"{field.name}_set" in self.fields:
                raise ValueError(f"Field {field.name + '_set'!r} clashes with the set input "
                                 f"of W1C field {field.name!r}")

    @property
    def port_name(self):
        """Name of this register's port group on :class:`CSRBank` (the lower-case name)."""
        return None if self.name is None else self.name.lower()

    @property
    def reset(self):
        """Value read after reset (fields the hardware drives count as 0)."""
        value = 0
        for field in self.fields.values():
            if field.access is not W and field.reset_bits is not None:
                value |= field.reset_bits << field.offset
        return value

    def encode(self, **values):
        """The register word holding ``values`` (field name to int or enum member)."""
        word = 0
        for name, value in values.items():
            if name not in self.fields:
                raise KeyError(f"Register {self.name!r} has no field {name!r}")
            field = self.fields[name]
            word |= _value_bits(field.shape, value, f"Value of field {name!r}") << field.offset
        return word

    def decode(self, word):
        """Field name to int (sign-extended for signed fields) of a register word."""
        values = {}
        for name, field in self.fields.items():
            bits = (word >> field.offset) & ((1 << field.width) - 1)
            if field.signed and bits >> (field.width - 1):
                bits -= 1 << field.width
            values[name] = bits
        return values

    def __repr__(self):
        where = f" {self.name} @ {self.address:#05x}" if self.name is not None else ""
        return f"<{type(self).__name__}{where}: {', '.join(self.fields)}>"


class Counter:
    """A wide hardware counter read through a ``<NAME>_LO`` / ``<NAME>_HI`` register pair.

    Reading ``_LO`` returns bits 31:0 and, in the same cycle, latches the counter's upper
    bits into a shadow register that ``_HI`` returns. Reading ``_LO`` then ``_HI`` therefore
    gives one consistent value even while the counter runs; ``_HI`` read alone returns the
    upper half as of the last ``_LO`` read. Each counter has its own shadow, so reads of
    different counters may interleave.

    Create counters with :meth:`RegisterMap.add_counter`.

    Attributes
    ----------
    name : str
        Lower-case name; also the name of the counter's input port on :class:`CSRBank`.
    width : int
        33 to 64 bits (32 leaves ``_HI`` without fields).
    lo, hi : Register
    description : str
    """

    def __init__(self, name, width, description):
        if not isinstance(name, str) or not _FIELD_NAME.match(name) or keyword.iskeyword(name):
            raise ValueError(f"Counter name must be a lower-case identifier, not {name!r}")
        if isinstance(width, bool) or not isinstance(width, int) or not 32 <= width <= 64:
            raise ValueError(f"Counter width must be an integer between 32 and 64, not {width!r}")
        self.name = name
        self.width = width
        self.description = description
        self.lo = Register({"value": Field(R, 32, desc=f"Bits 31:0 of {name}; reading latches "
                                                       f"the upper bits for {name.upper()}_HI")},
                           description=f"{description} (bits 31:0)")
        hi_fields = {}
        if width > 32:
            hi_fields["value"] = Field(R, width - 32, desc=f"Bits {width - 1}:32 of {name}, as "
                                                           f"latched by the last "
                                                           f"{name.upper()}_LO read")
        self.hi = Register(hi_fields, description=f"{description} (bits {width - 1}:32)")
        self.lo.counter = self.hi.counter = self

    def __repr__(self):
        return f"<Counter {self.name}, {self.width} bits>"


def FetchSignature(count):
    """The hardware's read port onto a :class:`CSRBank`'s fetched registers, from the
    fetcher's side: ``index`` (which of ``count`` registers) and ``en`` out, the word
    (``data``, the cycle after ``en``) and ``free`` (the port may be used) in, and
    ``hold`` out (the bank takes no bus request while it is high)."""
    return wiring.Signature({
        "index": Out(range(count)), "en": Out(1), "hold": Out(1),
        "data": In(REGISTER_WIDTH), "free": In(1),
    })


def _hex(value):
    return f"{value:#x}" if isinstance(value, int) and not isinstance(value, bool) \
        else repr(value)


class RegisterMap:
    """Lays out registers at 4-byte aligned addresses, in declaration order.

    Parameters
    ----------
    addr_width : int, optional
        Byte address width of the bank's AXI4-Lite port (2 to 32). Registers must fit below
        ``2**addr_width``. By default, the narrowest width that holds every register.

    Attributes
    ----------
    registers : tuple of Register
        In address order.
    counters : tuple of Counter
        In declaration order.
    addr_width : int

    Raises
    ------
    TypeError, ValueError
        For a bad or duplicate name, a misaligned, overlapping or out-of-range address, or
        adding to a frozen map.
    """

    def __init__(self, *, addr_width=None):
        if addr_width is not None and (isinstance(addr_width, bool)
                                       or not isinstance(addr_width, int)
                                       or not 2 <= addr_width <= 32):
            raise ValueError(f"addr_width must be an integer between 2 and 32, not "
                             f"{addr_width!r}")
        self._addr_width = addr_width
        self._registers = {}         # name -> Register, declaration order
        self._by_address = {}        # address -> Register
        self._counters = []
        self._ports = {"axi": "the bus port"}
        self._next_address = 0
        self._frozen = False

    def _check_open(self, name):
        if self._frozen:
            raise ValueError(f"Register map is frozen; cannot add {name!r}")

    def _claim_port(self, port, owner):
        if port in _RESERVED_PORT_NAMES or port in self._ports:
            other = self._ports.get(port, f"the interface attribute {port!r}")
            raise ValueError(f"{owner} would have the same port name {port!r} as {other}")

    def _check(self, name, register, address):
        """The address ``register`` would get as ``name``, or a ValueError."""
        if not isinstance(register, Register):
            raise TypeError(f"Expected a Register, not {register!r}")
        if not isinstance(name, str) or not _REGISTER_NAME.match(name):
            raise ValueError(f"Register name must be an upper-case identifier, not {name!r}")
        if name in self._registers:
            raise ValueError(f"Register name {name!r} is already used")
        if register.name is not None:
            raise ValueError(f"This Register object is already in a map, as {register.name!r}")
        if address is None:
            address = self._next_address
        elif isinstance(address, bool) or not isinstance(address, int) or address < 0 \
                or address % 4:
            raise ValueError(f"Address of register {name!r} must be a non-negative multiple "
                             f"of 4, not {_hex(address)}")
        if address in self._by_address:
            raise ValueError(f"Register {name!r} at {address:#x} overlaps register "
                             f"{self._by_address[address].name!r}")
        if self._addr_width is not None and address + 4 > 1 << self._addr_width:
            raise ValueError(f"Register {name!r} at {address:#x} does not fit in a "
                             f"{self._addr_width}-bit address space")
        return address

    def _commit(self, name, register, address):
        register.name = name
        register.address = address
        self._registers[name] = register
        self._by_address[address] = register
        self._next_address = address + 4

    def add(self, name, register, *, address=None):
        """Place ``register`` under ``name`` (upper case) at ``address`` or the next word.

        Returns the register.
        """
        self._check_open(name)
        address = self._check(name, register, address)
        self._claim_port(name.lower(), f"Register {name!r}")
        self._commit(name, register, address)
        self._ports[name.lower()] = f"register {name!r}"
        return register

    def add_counter(self, name, width=64, *, description="", address=None):
        """Add a :class:`Counter` as ``<NAME>_LO`` at ``address`` (or the next word) and
        ``<NAME>_HI`` right after it. Returns the counter."""
        self._check_open(name)
        counter = Counter(name, width, description)
        self._claim_port(name, f"Counter {name!r}")
        upper = name.upper()
        lo_address = self._check(f"{upper}_LO", counter.lo, address)
        hi_address = self._check(f"{upper}_HI", counter.hi, lo_address + 4)
        self._commit(f"{upper}_LO", counter.lo, lo_address)
        self._commit(f"{upper}_HI", counter.hi, hi_address)
        self._counters.append(counter)
        self._ports[name] = f"counter {name!r}"
        return counter

    def freeze(self):
        """Forbid further additions (a bank or a document is being built from the map)."""
        self._frozen = True
        return self

    @property
    def frozen(self):
        return self._frozen

    @property
    def registers(self):
        return tuple(sorted(self._registers.values(), key=lambda register: register.address))

    @property
    def counters(self):
        return tuple(self._counters)

    @property
    def addr_width(self):
        if self._addr_width is not None:
            return self._addr_width
        end = max(self._by_address, default=0) + 4
        return max(2, (end - 1).bit_length())

    def __getitem__(self, name):
        return self._registers[name]

    def __contains__(self, name):
        return name in self._registers

    def __iter__(self):
        return iter(self.registers)

    def __len__(self):
        return len(self._registers)

    def counter(self, name):
        """The :class:`Counter` called ``name``."""
        for counter in self._counters:
            if counter.name == name:
                return counter
        raise KeyError(name)


class CSRBank(wiring.Component):
    """The gateware of a :class:`RegisterMap`: an AXI4-Lite subordinate and field ports.

    Ports are named after the map: every register with ports is an interface named by its
    lower-case name, with one member per field (Verilog: ``<register>__<field>``):

    ========  =========================  ==============================================
    access    port                       meaning
    ========  =========================  ==============================================
    R         ``In(shape)``              value the hardware presents (none if ``const``)
    RW        ``Out(shape)``             current value
    W1C       ``Out(width)``             current sticky bits
              ``<field>_set: In(width)`` set the bits that are 1 this cycle
    W         ``Out(width)``             one-cycle pulse of the bits written as 1
    ========  =========================  ==============================================

    Every counter is one ``In(counter.width)`` port named after the counter; or, with
    ``counter_port=True``, the counters are read through one port, ``counter_index:
    Out(range(len(regmap.counters)))`` and ``counter_value: In(width)`` (the widest
    counter): a ``_LO`` read names its counter on ``counter_index`` and takes
    ``counter_value`` on the next cycle (one cycle more of read latency), as from a
    memory. So, for
    example, ``bank.status.busy`` (In), ``bank.status.done`` (Out),
    ``bank.status.done_set`` (In), ``bank.ctrl.start`` (Out), ``bank.cycles`` (In).
    Registers whose fields are all constants, and counter halves, have no port group.

    In a top-level whose own port ``csr`` is ``Out(AXI4LiteSignature(...))``::

        m.submodules.csr = bank = CSRBank(systole_register_map(config))
        wiring.connect(m, wiring.flipped(self.csr), bank.axi)
        m.d.comb += [bank.status.busy.eq(busy), bank.status.done_set.eq(job_ended),
                     bank.cycles.eq(cycles), start.eq(bank.ctrl.start)]

    Bus behaviour: AW and W are accepted independently, in either order or together, and
    the write is performed once both are held; B answers OKAY, or SLVERR for an address
    that maps no register (the write is dropped). Writes to R fields, and to the bits of
    unwritten byte lanes, are ignored. Reads answer one cycle after AR with the register
    value and OKAY, or 0 and SLVERR when unmapped; reading a W field gives 0. Address bits
    1:0 are ignored. One write and one read may be in progress at a time; a response is
    held until it is taken, however long ``bready``/``rready`` stay low, and no new request
    on that channel is accepted meanwhile, nor a read in the cycle a write is performed.
    Write effects (RW values, W pulses, W1C clears) appear at the ports on the cycle after
    the write is performed, together with ``bvalid``.

    Registers made only of RW fields and constants are read from a copy in a block RAM,
    written along with the field registers (a read multiplexer over every such register
    would cost a few logic cells per bit); the others are read from their ports.

    The registers named in ``fetched`` (made only of RW fields) have no flip-flops and no
    port group at all: their values live only in the copy, and the hardware reads them one
    word per cycle through the ``fetch`` port (:data:`FetchSignature`, seen from the bank):
    ``fetch.index`` names the ``fetched`` register, by position, on a cycle with
    ``fetch.en`` high, and ``fetch.data`` holds its value from the next cycle until the
    next fetch. The copy has one read port, shared with the bus: ``fetch.free`` is low
    while it holds the answer to a bus read that has not been taken, and the fetcher must
    wait for it. While ``fetch.hold`` is high the bank accepts no read and performs no
    write (they wait), so the words fetched meanwhile are one consistent set: those of
    the writes performed before ``hold`` rose.

    Parameters
    ----------
    regmap : RegisterMap
        Frozen by the bank.
    counter_port : bool
        Read the counters through ``counter_index`` / ``counter_value``.
    fetched : sequence of str
        Names of registers made only of RW fields, read by the hardware through ``fetch``.

    Attributes
    ----------
    axi : Out(AXI4LiteSignature(addr_width=regmap.addr_width, data_width=32))
        The subordinate side (the signature is written from the subordinate's view).
    fetch : In(FetchSignature(len(fetched)))
        Only with ``fetched``.
    regmap : RegisterMap

    Raises
    ------
    TypeError, ValueError
        For a map that is not a RegisterMap, or a ``fetched`` name that is not a register
        of RW fields in the map.
    """

    def __init__(self, regmap, *, counter_port=False, fetched=()):
        if not isinstance(regmap, RegisterMap):
            raise TypeError(f"CSRBank needs a RegisterMap, not {regmap!r}")
        self._regmap = regmap.freeze()
        self._counter_port = bool(counter_port) and bool(regmap.counters)
        if isinstance(fetched, str):
            raise TypeError(f"fetched must be a sequence of register names, not {fetched!r}")
        self._fetched = []
        for name in fetched:
            register = regmap[name] if name in regmap else None
            if register is None or register.counter is not None or not register.fields \
                    or any(field.access is not RW for field in register.fields.values()):
                raise ValueError(f"Fetched register {name!r} must be a register of RW "
                                 f"fields in the map")
            if register in self._fetched:
                raise ValueError(f"Fetched register {name!r} is named twice")
            self._fetched.append(register)
        # AXI4LiteSignature is written from the subordinate's side, so the bank's port is
        # Out of it (a manager, e.g. a host bridge, holds In of it and connects to this).
        members = {"axi": Out(AXI4LiteSignature(addr_width=regmap.addr_width,
                                               data_width=REGISTER_WIDTH))}
        for register in regmap.registers:
            if register.counter is not None or register in self._fetched:
                continue
            ports = {}
            for field in register.fields.values():
                if field.access is R and field.const is None:
                    ports[field.name] = In(field.shape)
                elif field.access is RW:
                    ports[field.name] = Out(field.shape, init=field.reset)
                elif field.access is W1C:
                    ports[field.name] = Out(field.width, init=field.reset_bits)
                    ports[f"{field.name}_set"] = In(field.width)
                elif field.access is W:
                    ports[field.name] = Out(field.width)
            if ports:
                members[register.port_name] = Out(wiring.Signature(ports))
        if self._counter_port:
            members["counter_index"] = Out(range(len(regmap.counters)))
            members["counter_value"] = In(max(counter.width for counter in regmap.counters))
        else:
            for counter in regmap.counters:
                members[counter.name] = In(counter.width)
        if self._fetched:
            members["fetch"] = In(FetchSignature(len(self._fetched)))
        super().__init__(members)

    @property
    def regmap(self):
        return self._regmap

    def _ports_of(self, register):
        return getattr(self, register.port_name)

    def elaborate(self, platform):
        m = Module()
        axi = self.axi
        regmap = self._regmap
        word_width = regmap.addr_width - 2

        # Latched shadows of the counters' upper halves (see Counter).
        shadows = {counter.name: Signal(counter.width - 32, name=f"{counter.name}_hi_shadow")
                   for counter in regmap.counters if counter.width > 32}

        def field_value(register, field):
            if field.access is W:
                return Const(0, field.width)
            if field.const is not None:
                return Const(field.reset_bits, field.width)
            if register.counter is not None:
                counter = register.counter
                if register is counter.lo:
                    return getattr(self, counter.name)[:32]
                return shadows[counter.name]
            return Value.cast(getattr(self._ports_of(register), field.name)).as_unsigned()

        def read_value(register):
            parts, position = [], 0
            for field in sorted(register.fields.values(), key=lambda field: field.offset):
                if field.offset > position:
                    parts.append(Const(0, field.offset - position))
                parts.append(field_value(register, field))
                position = field.offset + field.width
            if position < REGISTER_WIDTH:
                parts.append(Const(0, REGISTER_WIDTH - position))
            return Cat(*parts)

        # -- writes: AW and W are taken independently and held until both are here --------
        aw_held = Signal()
        aw_word = Signal(word_width)
        w_held = Signal()
        w_data = Signal(REGISTER_WIDTH)
        w_strb = Signal(REGISTER_WIDTH // 8)
        m.d.comb += [
            axi.awready.eq(~aw_held & ~axi.bvalid),
            axi.wready.eq(~w_held & ~axi.bvalid),
        ]
        with m.If(axi.awvalid & axi.awready):
            m.d.sync += [aw_held.eq(1), aw_word.eq(axi.awaddr[2:])]
        with m.If(axi.wvalid & axi.wready):
            m.d.sync += [w_held.eq(1), w_data.eq(axi.wdata), w_strb.eq(axi.wstrb)]

        hold = self.fetch.hold if self._fetched else Const(0)
        perform = Signal()
        m.d.comb += perform.eq(aw_held & w_held & ~hold)
        lane_mask = Cat(*(w_strb[lane].replicate(8) for lane in range(REGISTER_WIDTH // 8)))
        written = Signal(REGISTER_WIDTH)
        m.d.comb += written.eq(w_data & lane_mask)

        mapped_write = Signal()
        words = [register.address >> 2 for register in regmap.registers]
        if words:
            m.d.comb += mapped_write.eq(aw_word.matches(*words))
        with m.If(perform):
            m.d.sync += [
                aw_held.eq(0),
                w_held.eq(0),
                axi.bvalid.eq(1),
                axi.bresp.eq(Mux(mapped_write, RESP_OKAY, RESP_SLVERR)),
            ]
        with m.Elif(axi.bready):
            m.d.sync += axi.bvalid.eq(0)

        for register in regmap.registers:
            if register.counter is not None or register in self._fetched:
                continue
            hit = Signal(name=f"{register.port_name}_write")
            m.d.comb += hit.eq(perform & (aw_word == register.address >> 2))
            for field in register.fields.values():
                lsb, width = field.offset, field.width
                data = written[lsb:lsb + width]
                mask = lane_mask[lsb:lsb + width]
                if field.access is RW:
                    port = Value.cast(getattr(self._ports_of(register), field.name))
                    with m.If(hit):
                        m.d.sync += port.eq((port.as_unsigned() & ~mask) | data)
                elif field.access is W:
                    port = getattr(self._ports_of(register), field.name)
                    m.d.sync += port.eq(Mux(hit, data, 0))
                elif field.access is W1C:
                    ports = self._ports_of(register)
                    value = getattr(ports, field.name)
                    setting = getattr(ports, f"{field.name}_set")
                    # A hardware set wins over a simultaneous software clear.
                    m.d.sync += value.eq((value & ~Mux(hit, data, 0)) | setting)

        # -- the block RAM copy of the registers made of RW fields and constants -----------
        copied = [register for register in regmap.registers
                  if register.counter is None and register.fields
                  and all(field.access is RW or field.const is not None
                          for field in register.fields.values())]
        from_copy = Signal()            # the read being answered comes from the copy
        rdata = Signal(REGISTER_WIDTH)  # else this
        if copied:
            depth = max(register.address >> 2 for register in copied) + 1
            init = [0] * depth
            for register in copied:
                init[register.address >> 2] = register.reset
            # No read is taken in the cycle a write is performed (see arready below).
            m.submodules.copy = copy = memory.Memory(shape=REGISTER_WIDTH, depth=depth,
                                                     init=init, attrs=NO_COLLISION)
            copy_write = copy.write_port(granularity=8)
            copy_read = RegisteredReadPort(m, copy, name="copy_read")
            stored_bits = Signal(REGISTER_WIDTH)     # the RW bits of the register written
            with m.Switch(aw_word):
                for register in copied:
                    mask = sum(field.mask for field in register.fields.values()
                               if field.access is RW)
                    if mask:
                        with m.Case(register.address >> 2):
                            m.d.comb += [stored_bits.eq(mask),
                                         copy_write.en.eq(Mux(perform, w_strb, 0))]
            m.d.comb += [
                copy_write.addr.eq(aw_word),
                copy_write.data.eq(w_data & stored_bits),
                copy_read.addr.eq(axi.araddr[2:]),
                copy_read.en.eq(axi.arvalid & axi.arready),
                axi.rdata.eq(Mux(from_copy, copy_read.data, rdata)),
            ]
            if self._fetched:
                # The fetch port borrows the read port (no bus read is accepted meanwhile).
                fetch = self.fetch
                with m.If(fetch.en):
                    with m.Switch(fetch.index):
                        for index, register in enumerate(self._fetched):
                            with m.Case(index):
                                m.d.comb += copy_read.addr.eq(register.address >> 2)
                    m.d.comb += copy_read.en.eq(1)
                m.d.comb += [fetch.data.eq(copy_read.data),
                             fetch.free.eq(~(axi.rvalid & from_copy))]
        else:
            m.d.comb += axi.rdata.eq(rdata)

        # -- reads: answer one cycle after AR, hold until taken ---------------------------
        if self._counter_port:
            # A counter's low half comes from the counter port one cycle later.
            fetching = Signal()
            fetched = Signal(range(len(regmap.counters)))
            m.d.comb += axi.arready.eq(~axi.rvalid & ~fetching & ~perform & ~hold)
            with m.If(fetching):
                value = self.counter_value
                m.d.sync += [fetching.eq(0), axi.rvalid.eq(1), rdata.eq(value[:32]),
                             axi.rresp.eq(RESP_OKAY)]
                with m.Switch(fetched):
                    for index, counter in enumerate(regmap.counters):
                        if counter.name in shadows:
                            with m.Case(index):
                                m.d.sync += shadows[counter.name].eq(
                                    value[32:counter.width])
        else:
            m.d.comb += axi.arready.eq(~axi.rvalid & ~perform & ~hold)
        with m.If(axi.arvalid & axi.arready):
            m.d.sync += [axi.rvalid.eq(1), from_copy.eq(0)]
            with m.Switch(axi.araddr[2:]):
                for register in regmap.registers:
                    with m.Case(register.address >> 2):
                        counter = register.counter
                        if self._counter_port and counter is not None \
                                and register is counter.lo:
                            index = regmap.counters.index(counter)
                            m.d.comb += self.counter_index.eq(index)
                            m.d.sync += [axi.rvalid.eq(0), fetching.eq(1), fetched.eq(index)]
                            continue
                        if register in copied:
                            m.d.sync += [from_copy.eq(1), axi.rresp.eq(RESP_OKAY)]
                            continue
                        m.d.sync += [rdata.eq(read_value(register)),
                                     axi.rresp.eq(RESP_OKAY)]
                        if counter is not None and register is counter.lo \
                                and counter.name in shadows:
                            m.d.sync += shadows[counter.name].eq(
                                getattr(self, counter.name)[32:])
                with m.Default():
                    m.d.sync += [rdata.eq(0), axi.rresp.eq(RESP_SLVERR)]
        with m.Elif(axi.rvalid & axi.rready):
            m.d.sync += axi.rvalid.eq(0)

        return m
