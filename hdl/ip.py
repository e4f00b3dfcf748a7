"""The accelerator as IP: :class:`~systole.hdl.top.Accelerator` with the port names
integrators' tools recognise.

Amaranth names a component's Verilog ports after their signature paths (``mem__araddr``).
:func:`ip_ports` renames them for the Verilog back end's ``ports=`` argument instead:
``m_axi_*`` for the AXI4 manager (memory), ``s_axil_*`` for the AXI4-Lite subordinate
(CSRs), ``irq``. The clock and the reset of Amaranth's ``sync`` domain are the ports
``clk`` and ``rst``; the reset is active high and synchronous. Nothing is added between
the ports and the accelerator, and the module is the accelerator itself.
"""

__all__ = ["IP_PREFIXES", "ip_ports"]

#: Accelerator port -> the prefix of its flat Verilog port names.
IP_PREFIXES = {"mem": "m_axi_", "csr": "s_axil_"}


def ip_ports(accelerator):
    """``{Verilog port name: (signal, None)}`` of an Accelerator, for
    ``amaranth.back.verilog.convert(accelerator, ports=...)``: ``m_axi_*``, ``s_axil_*``
    and ``irq``. The direction None lets the back end infer it (a port the design drives
    is an output); the back end adds the ``sync`` domain's ``clk`` and ``rst`` itself."""
    ports = {}
    for path, _member, value in accelerator.signature.flatten(accelerator):
        head, *rest = path
        name = IP_PREFIXES[head] + "_".join(map(str, rest)) if head in IP_PREFIXES else \
            "_".join(map(str, path))
        ports[name] = (value, None)
    return ports
