// Verilator harness: the exported accelerator (`systole verilog --top accelerator`) run
// by the C driver (sw/systole.c), with no cocotb.
//
//   systole_harness JOBS RESULTS
//
// The harness implements the driver's MMIO hooks by driving the AXI4-Lite port, and
// serves the AXI4 port from a byte array with a read latency: a read burst's first beat
// is offered `latency` + 1 cycles after its AR handshake, as the gateware memory model
// (hdl/simmem.py) does and the performance model's MemoryModel(latency) assumes; beats
// follow one per cycle, bursts in order; ready is always high. JOBS is text, one command
// a line:
//
//   latency CYCLES
//   gemm IMAGE OUT M N K A_ADDR B_ADDR C_ADDR A_STRIDE B_STRIDE C_STRIDE A_FMT B_FMT
//        OUT_FMT SATURATE SCALE_EXP MC_TILES NC_TILES KC_LOG2 ORDER IRQ
//   example IMAGE OUT M N K A_ADDR B_ADDR C_ADDR        (sw/example.c)
//
// Each job loads the memory from the file IMAGE (its size is the memory's), runs through
// the driver and writes the memory to OUT. RESULTS gets one line per job:
//
//   STATUS WRITE_BEATS WRITE_BYTES STRAY_ACCESSES COUNTER...   (counters in register order)
//
// WRITE_BEATS counts W beats with any strobe set; STRAY_ACCESSES counts bytes read or
// written outside the memory. Numbers are decimal.
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "Vsystole.h"
#include "verilated.h"
#include "example.h"
#include "systole.h"

namespace {

// Bus words of any width: Verilator holds up to 64 bits in an integer, more in VlWide.
template <typename T> uint8_t lane(const T &word, int i) { return uint8_t(uint64_t(word) >> (8 * i)); }
template <std::size_t N> uint8_t lane(const VlWide<N> &word, int i) {
    return uint8_t(word[i / 4] >> (8 * (i % 4)));
}
template <typename T> void set_lane(T &word, int i, uint8_t value) {
    word = T((uint64_t(word) & ~(uint64_t(0xff) << (8 * i))) | (uint64_t(value) << (8 * i)));
}
template <std::size_t N> void set_lane(VlWide<N> &word, int i, uint8_t value) {
    word[i / 4] = (word[i / 4] & ~(0xffu << (8 * (i % 4)))) | (uint32_t(value) << (8 * (i % 4)));
}
template <typename T> bool strobe(const T &word, int i) { return (uint64_t(word) >> i) & 1; }

struct Burst {
    uint64_t addr;
    unsigned beats, size, id;
    uint64_t due;       // read bursts: the first cycle the first beat may leave
};

const uint64_t WATCHDOG = 50000000;   // cycles one job may take

class Harness {
  public:
    explicit Harness(VerilatedContext *context) : top(new Vsystole(context)) {
        top->rst = 1;
        for (int i = 0; i < 4; i++) cycle();
        top->rst = 0;
        cycle();
        uint32_t config0 = csr_read(SYSTOLE_CONFIG0_ADDR);
        bus_bytes = (config0 & SYSTOLE_CONFIG0_BUS_BYTES_MASK) >> SYSTOLE_CONFIG0_BUS_BYTES_SHIFT;
    }
    ~Harness() { top->final(); delete top; }

    std::vector<uint8_t> mem;
    unsigned latency = 32;
    uint64_t write_beats = 0, write_bytes = 0, stray = 0, now = 0;

    uint32_t csr_read(uint32_t offset) {
        top->s_axil_araddr = offset;
        top->s_axil_arprot = 0;
        top->s_axil_arvalid = 1;
        top->s_axil_rready = 1;
        bool addressed = false;
        for (uint64_t start = now; now - start < 1000;) {
            top->clk = 0;
            top->eval();
            bool ar = top->s_axil_arvalid && top->s_axil_arready;
            bool r = top->s_axil_rvalid && top->s_axil_rready;
            uint32_t data = top->s_axil_rdata;
            edge();
            if (ar) { addressed = true; top->s_axil_arvalid = 0; }
            if (r && addressed) { top->s_axil_rready = 0; return data; }
        }
        fail("AXI4-Lite read of 0x%x got no answer", offset);
        return 0;
    }

    void csr_write(uint32_t offset, uint32_t value) {
        top->s_axil_awaddr = offset;
        top->s_axil_awprot = 0;
        top->s_axil_awvalid = 1;
        top->s_axil_wdata = value;
        top->s_axil_wstrb = 0xf;
        top->s_axil_wvalid = 1;
        top->s_axil_bready = 1;
        for (uint64_t start = now; now - start < 1000;) {
            top->clk = 0;
            top->eval();
            bool aw = top->s_axil_awvalid && top->s_axil_awready;
            bool w = top->s_axil_wvalid && top->s_axil_wready;
            bool b = top->s_axil_bvalid && top->s_axil_bready;
            edge();
            if (aw) top->s_axil_awvalid = 0;
            if (w) top->s_axil_wvalid = 0;
            if (b && !top->s_axil_awvalid && !top->s_axil_wvalid) { top->s_axil_bready = 0; return; }
        }
        fail("AXI4-Lite write of 0x%x got no answer", offset);
    }

    // The interrupt wait the driver calls between STATUS reads: run until irq is high.
    void wait_irq() {
        for (uint64_t start = now; !top->irq; cycle())
            if (now - start > WATCHDOG) fail("no interrupt within %llu cycles", (unsigned long long)WATCHDOG);
    }

    void begin_job() { write_beats = write_bytes = stray = 0; job_start = now; }
    void check_watchdog() {
        if (now - job_start > WATCHDOG) fail("the job did not end within %llu cycles", (unsigned long long)WATCHDOG);
    }

    [[noreturn]] static void fail(const char *format, ...) __attribute__((format(printf, 1, 2)));

  private:
    Vsystole *top;
    unsigned bus_bytes = 4;         // CONFIG0.BUS_BYTES, read after reset
    uint64_t job_start = 0;
    std::deque<Burst> reads, writes;
    unsigned read_beat = 0, write_beat = 0;
    std::deque<unsigned> responses;

    uint64_t beat_address(const Burst &burst, unsigned beat) const {
        uint64_t aligned = burst.addr & ~uint64_t((1u << burst.size) - 1);
        return beat == 0 ? burst.addr : aligned + uint64_t(beat) * (1u << burst.size);
    }

    void cycle() {
        top->clk = 0;
        top->eval();
        edge();
    }

    // The rising edge: sample the memory port's handshakes (the design has seen the same
    // inputs), clock the design, then present the memory's outputs for the next cycle.
    void edge() {
        bool ar = top->m_axi_arvalid && top->m_axi_arready;
        bool r = top->m_axi_rvalid && top->m_axi_rready;
        bool aw = top->m_axi_awvalid && top->m_axi_awready;
        bool w = top->m_axi_wvalid && top->m_axi_wready;
        bool b = top->m_axi_bvalid && top->m_axi_bready;
        Burst ar_burst{uint64_t(top->m_axi_araddr), unsigned(top->m_axi_arlen) + 1u,
                       unsigned(top->m_axi_arsize), unsigned(top->m_axi_arid), now + 1 + latency};
        Burst aw_burst{uint64_t(top->m_axi_awaddr), unsigned(top->m_axi_awlen) + 1u,
                       unsigned(top->m_axi_awsize), unsigned(top->m_axi_awid), 0};
        if (w) take_write_beat();
        top->clk = 1;
        top->eval();
        now++;
        if (ar) reads.push_back(ar_burst);
        if (aw) writes.push_back(aw_burst);
        if (r && ++read_beat == reads.front().beats) { reads.pop_front(); read_beat = 0; }
        if (b) responses.pop_front();
        present();
    }

    void take_write_beat() {
        if (writes.empty()) fail("a W beat before its AW");
        const Burst &burst = writes.front();
        uint64_t base = beat_address(burst, write_beat) & ~uint64_t(bus_bytes - 1);
        bool any = false;
        for (unsigned i = 0; i < bus_bytes; i++) {
            if (!strobe(top->m_axi_wstrb, i)) continue;
            any = true;
            write_bytes++;
            if (base + i < mem.size()) mem[base + i] = lane(top->m_axi_wdata, i);
            else stray++;
        }
        write_beats += any;
        if (++write_beat == burst.beats) {
            if (!top->m_axi_wlast) fail("WLAST missing on the last beat of a burst");
            responses.push_back(burst.id);
            writes.pop_front();
            write_beat = 0;
        }
    }

    void present() {
        top->m_axi_arready = 1;
        top->m_axi_awready = 1;
        top->m_axi_wready = !writes.empty();
        top->m_axi_bvalid = !responses.empty();
        top->m_axi_bid = responses.empty() ? 0 : responses.front();
        top->m_axi_bresp = 0;
        bool due = !reads.empty() && reads.front().due <= now;
        top->m_axi_rvalid = due;
        top->m_axi_rresp = 0;
        if (due) {
            const Burst &burst = reads.front();
            uint64_t base = beat_address(burst, read_beat) & ~uint64_t(bus_bytes - 1);
            for (unsigned i = 0; i < bus_bytes; i++) {
                uint8_t value = 0;
                if (base + i < mem.size()) value = mem[base + i];
                else stray++;
                set_lane(top->m_axi_rdata, i, value);
            }
            top->m_axi_rid = burst.id;
            top->m_axi_rlast = read_beat + 1 == burst.beats;
        }
    }
};

void Harness::fail(const char *format, ...) {
    va_list args;
    va_start(args, format);
    std::fprintf(stderr, "systole_harness: ");
    std::vfprintf(stderr, format, args);
    std::fprintf(stderr, "\n");
    va_end(args);
    std::exit(1);
}

Harness *harness;

std::vector<uint8_t> load(const std::string &path) {
    std::ifstream file(path, std::ios::binary);
    if (!file) Harness::fail("cannot read %s", path.c_str());
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(file), {});
}

void save(const std::string &path, const std::vector<uint8_t> &data) {
    std::ofstream file(path, std::ios::binary);
    file.write(reinterpret_cast<const char *>(data.data()), std::streamsize(data.size()));
    if (!file) Harness::fail("cannot write %s", path.c_str());
}

void irq_wait(void *ctx) { static_cast<Harness *>(ctx)->wait_irq(); }

}  // namespace

extern "C" uint32_t systole_mmio_read32(void *ctx, uint32_t offset) {
    Harness *h = static_cast<Harness *>(ctx);
    h->check_watchdog();
    return h->csr_read(offset);
}

extern "C" void systole_mmio_write32(void *ctx, uint32_t offset, uint32_t value) {
    static_cast<Harness *>(ctx)->csr_write(offset, value);
}

int main(int argc, char **argv) {
    if (argc != 3) Harness::fail("usage: systole_harness JOBS RESULTS");
    VerilatedContext context;
    Harness h(&context);
    std::ifstream jobs(argv[1]);
    std::ofstream results(argv[2]);
    if (!jobs || !results) Harness::fail("cannot open %s or %s", argv[1], argv[2]);
    std::string line;
    while (std::getline(jobs, line)) {
        std::istringstream words(line);
        std::string command, image, out;
        words >> command;
        if (command.empty()) continue;
        if (command == "latency") { words >> h.latency; continue; }
        words >> image >> out;
        h.mem = load(image);
        h.begin_job();
        systole_counter_values counters = {};
        int status;
        if (command == "gemm") {
            systole_gemm job;
            unsigned a_fmt, b_fmt, out_fmt, order;
            int irq;
            words >> job.m >> job.n >> job.k >> job.a_addr >> job.b_addr >> job.c_addr
                >> job.a_stride >> job.b_stride >> job.c_stride >> a_fmt >> b_fmt >> out_fmt
                >> job.saturate >> job.scale_exp >> job.plan.mc_tiles >> job.plan.nc_tiles
                >> job.plan.kc_log2 >> order >> irq;
            if (!words) Harness::fail("bad line: %s", line.c_str());
            job.a_format = systole_fp8(a_fmt);
            job.b_format = systole_fp8(b_fmt);
            job.out_format = systole_out(out_fmt);
            job.plan.order = systole_order(order);
            systole_dev dev = {};
            dev.ctx = &h;
            status = systole_probe(&dev);
            if (status == SYSTOLE_OK) status = systole_gemm_start(&dev, &job, irq);
            if (status == SYSTOLE_OK) status = systole_wait(&dev, irq ? irq_wait : nullptr, 0);
            systole_counters(&dev, &counters);
        } else if (command == "example") {
            uint32_t m, n, k;
            uint64_t a, b, c;
            words >> m >> n >> k >> a >> b >> c;
            if (!words) Harness::fail("bad line: %s", line.c_str());
            status = systole_example(&h, a, b, c, m, n, k, &counters);
        } else {
            Harness::fail("unknown command %s", command.c_str());
        }
        save(out, h.mem);
        results << status << ' ' << h.write_beats << ' ' << h.write_bytes << ' ' << h.stray;
#define SYSTOLE_PRINT_COUNTER(name, lo, hi) results << ' ' << counters.name;
        SYSTOLE_COUNTERS(SYSTOLE_PRINT_COUNTER)
#undef SYSTOLE_PRINT_COUNTER
        results << '\n';
    }
    return 0;
}
