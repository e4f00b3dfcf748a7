/* Systole C driver: run GEMMs on a Systole accelerator through its CSRs.
 *
 * C99, freestanding: it needs <stdint.h> and the generated register map
 * (systole_regs.h, written by `systole regmap` and `systole verilog --fusesoc`), and
 * nothing else. The integrator provides the two MMIO hooks below; `ctx` is the
 * systole_dev's, so that one program can drive several instances.
 *
 * A job: systole_gemm_start(), systole_wait(), then systole_counters(). See
 * docs/integration.md for the ports, the address map and a complete example. */
#ifndef SYSTOLE_H
#define SYSTOLE_H

#include <stdint.h>

#include "systole_regs.h"

#ifdef __cplusplus
extern "C" {
#endif

/* -- hooks the integrator provides ------------------------------------------------- */

/* 32-bit read and write of the CSR at byte `offset` (0 .. SYSTOLE_REGS_SIZE - 4) of the
 * instance `ctx` names. */
uint32_t systole_mmio_read32(void *ctx, uint32_t offset);
void systole_mmio_write32(void *ctx, uint32_t offset, uint32_t value);

/* Returns once the instance may have raised its interrupt (for example: WFI, or block on
 * an event the interrupt handler posts); systole_wait() calls it between STATUS reads. */
typedef void systole_irq_wait_fn(void *ctx);

/* -- types ------------------------------------------------------------------------- */

/* What a driver call returns. The values up to 255 are the accelerator's own error codes
 * (ERROR_CODE.CODE, docs/registers.md), generated from the register map; the driver's
 * own conditions follow them. */
typedef enum {
#define SYSTOLE_ENUM_ERROR(name, code, meaning) SYSTOLE_ERR_##name = (code),
    SYSTOLE_ERROR_CODES(SYSTOLE_ENUM_ERROR)
#undef SYSTOLE_ENUM_ERROR
    SYSTOLE_ERR_NO_DEVICE = 0x100,  /* ID does not read "SYST" */
    SYSTOLE_ERR_VERSION,            /* the register interface's major version differs */
    SYSTOLE_ERR_TIMEOUT             /* systole_wait() gave up */
} systole_status;

#define SYSTOLE_OK SYSTOLE_ERR_NONE

/* One instance: the context its MMIO hooks receive, and what systole_probe() read. */
typedef struct {
    void *ctx;
    uint32_t version;               /* VERSION: major << 16 | minor */
    uint32_t rows, cols;            /* PE array: a C tile is rows x cols */
    uint32_t bus_bytes;             /* AXI4 data width in bytes */
    uint32_t formats;               /* bit 0: E4M3, bit 1: E5M2 */
    uint32_t max_k;
    uint32_t sram_depth, row_tiles, psum_depth;
    uint32_t addr_width, counter_width;
} systole_dev;

typedef enum { SYSTOLE_E4M3 = SYSTOLE_FORMAT_A_FORMAT_E4M3,
               SYSTOLE_E5M2 = SYSTOLE_FORMAT_A_FORMAT_E5M2 } systole_fp8;
typedef enum { SYSTOLE_OUT_FP32 = SYSTOLE_FORMAT_OUT_FORMAT_FP32,
               SYSTOLE_OUT_BF16 = SYSTOLE_FORMAT_OUT_FORMAT_BF16,
               SYSTOLE_OUT_E4M3 = SYSTOLE_FORMAT_OUT_FORMAT_E4M3,
               SYSTOLE_OUT_E5M2 = SYSTOLE_FORMAT_OUT_FORMAT_E5M2 } systole_out;
typedef enum { SYSTOLE_ROWS_OUTER = SYSTOLE_PLAN_ORDER_ROWS_OUTER,
               SYSTOLE_COLS_OUTER = SYSTOLE_PLAN_ORDER_COLS_OUTER } systole_order;

/* The tiling plan (PLAN register, systole.plan): C blocks of mc_tiles x nc_tiles tiles,
 * K in chunks of 2**kc_log2. systole_plan_minimal() is valid for every job; the
 * host's traffic-optimal choice is systole.plan.choose() (Python). */
typedef struct {
    uint32_t mc_tiles, nc_tiles, kc_log2;
    systole_order order;
} systole_plan;

/* A job C = A . B: A is m x k fp8, B is k x n fp8, C is m x n out_format; addresses and
 * row strides in bytes, as the accelerator's memory port sees them. */
typedef struct {
    uint32_t m, n, k;
    uint64_t a_addr, b_addr, c_addr;
    uint32_t a_stride, b_stride, c_stride;
    systole_fp8 a_format, b_format;
    systole_out out_format;
    int saturate;                   /* fp8 outputs: saturate (1) or overflow (0) */
    int scale_exp;                  /* C = round(A . B * 2**scale_exp), -128 .. 127 */
    systole_plan plan;
} systole_gemm;

/* Every counter of a job (docs/counters.md), 64 bits each. */
typedef struct {
#define SYSTOLE_COUNTER_FIELD(name, lo, hi) uint64_t name;
    SYSTOLE_COUNTERS(SYSTOLE_COUNTER_FIELD)
#undef SYSTOLE_COUNTER_FIELD
} systole_counter_values;

/* -- calls ------------------------------------------------------------------------- */

/* Read ID, VERSION and CONFIG0..CONFIG4 into dev (dev->ctx set by the caller). */
systole_status systole_probe(systole_dev *dev);

/* The smallest plan, which the accelerator accepts for every job it accepts. */
systole_plan systole_plan_minimal(const systole_dev *dev);

/* Clear DONE and ERROR, write the descriptor, enable the interrupt when `irq` is
 * non-zero, and write START. SYSTOLE_ERR_BUSY (nothing written) while a job runs. */
systole_status systole_gemm_start(const systole_dev *dev, const systole_gemm *job,
                                  int irq);

/* Wait for the job to end: read STATUS until DONE, calling irq_wait (when not null)
 * before each read after the first; SYSTOLE_ERR_TIMEOUT after max_polls reads (0: no
 * limit). Returns the job's ERROR_CODE (SYSTOLE_OK for a completed job) and clears
 * DONE and ERROR; the counters keep the job's values until the next START. */
systole_status systole_wait(const systole_dev *dev, systole_irq_wait_fn *irq_wait,
                            uint32_t max_polls);

/* Read every counter, each LO then HI (reading LO latches HI). */
void systole_counters(const systole_dev *dev, systole_counter_values *out);

/* A sentence about a status. */
const char *systole_strerror(systole_status status);

#ifdef __cplusplus
}
#endif

#endif /* SYSTOLE_H */
