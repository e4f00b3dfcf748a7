/* Systole C driver (see systole.h). */
#include "systole.h"

#define FIELD(reg, field, value) \
    (((uint32_t)(value) << SYSTOLE_##reg##_##field##_SHIFT) & SYSTOLE_##reg##_##field##_MASK)
#define GET(word, reg, field) \
    (((word) & SYSTOLE_##reg##_##field##_MASK) >> SYSTOLE_##reg##_##field##_SHIFT)

static uint32_t rd(const systole_dev *dev, uint32_t offset)
{
    return systole_mmio_read32(dev->ctx, offset);
}

static void wr(const systole_dev *dev, uint32_t offset, uint32_t value)
{
    systole_mmio_write32(dev->ctx, offset, value);
}

systole_status systole_probe(systole_dev *dev)
{
    uint32_t config0, config3, config4;
    if (rd(dev, SYSTOLE_ID_ADDR) != SYSTOLE_ID_MAGIC_VALUE)
        return SYSTOLE_ERR_NO_DEVICE;
    dev->version = rd(dev, SYSTOLE_VERSION_ADDR);
    if (GET(dev->version, VERSION, MAJOR) != SYSTOLE_VERSION_MAJOR_VALUE)
        return SYSTOLE_ERR_VERSION;
    config0 = rd(dev, SYSTOLE_CONFIG0_ADDR);
    dev->rows = GET(config0, CONFIG0, ROWS);
    dev->cols = GET(config0, CONFIG0, COLS);
    dev->bus_bytes = GET(config0, CONFIG0, BUS_BYTES);
    dev->formats = GET(config0, CONFIG0, FORMATS);
    dev->max_k = rd(dev, SYSTOLE_CONFIG1_ADDR);
    dev->sram_depth = rd(dev, SYSTOLE_CONFIG2_ADDR);
    config3 = rd(dev, SYSTOLE_CONFIG3_ADDR);
    dev->addr_width = GET(config3, CONFIG3, ADDR_WIDTH);
    dev->counter_width = GET(config3, CONFIG3, COUNTER_WIDTH);
    config4 = rd(dev, SYSTOLE_CONFIG4_ADDR);
    dev->row_tiles = GET(config4, CONFIG4, ROW_TILES);
    dev->psum_depth = GET(config4, CONFIG4, PSUM_DEPTH);
    return SYSTOLE_OK;
}

systole_plan systole_plan_minimal(const systole_dev *dev)
{
    /* One tile per block and a K chunk of one bus word (systole.plan.kc_log2_range). */
    systole_plan plan;
    uint32_t log2 = 0;
    while ((2u << log2) <= dev->bus_bytes)
        log2++;
    plan.mc_tiles = 1;
    plan.nc_tiles = 1;
    plan.kc_log2 = log2;
    plan.order = SYSTOLE_ROWS_OUTER;
    return plan;
}

systole_status systole_gemm_start(const systole_dev *dev, const systole_gemm *job, int irq)
{
    if (GET(rd(dev, SYSTOLE_STATUS_ADDR), STATUS, BUSY))
        return SYSTOLE_ERR_BUSY;
    wr(dev, SYSTOLE_STATUS_ADDR, FIELD(STATUS, DONE, 1) | FIELD(STATUS, ERROR, 1));
    wr(dev, SYSTOLE_M_ADDR, job->m);
    wr(dev, SYSTOLE_N_ADDR, job->n);
    wr(dev, SYSTOLE_K_ADDR, job->k);
    wr(dev, SYSTOLE_A_ADDR_LO_ADDR, (uint32_t)job->a_addr);
    wr(dev, SYSTOLE_A_ADDR_HI_ADDR, (uint32_t)(job->a_addr >> 32));
    wr(dev, SYSTOLE_B_ADDR_LO_ADDR, (uint32_t)job->b_addr);
    wr(dev, SYSTOLE_B_ADDR_HI_ADDR, (uint32_t)(job->b_addr >> 32));
    wr(dev, SYSTOLE_C_ADDR_LO_ADDR, (uint32_t)job->c_addr);
    wr(dev, SYSTOLE_C_ADDR_HI_ADDR, (uint32_t)(job->c_addr >> 32));
    wr(dev, SYSTOLE_A_STRIDE_ADDR, job->a_stride);
    wr(dev, SYSTOLE_B_STRIDE_ADDR, job->b_stride);
    wr(dev, SYSTOLE_C_STRIDE_ADDR, job->c_stride);
    wr(dev, SYSTOLE_FORMAT_ADDR,
       FIELD(FORMAT, A_FORMAT, job->a_format) | FIELD(FORMAT, B_FORMAT, job->b_format)
       | FIELD(FORMAT, OUT_FORMAT, job->out_format)
       | FIELD(FORMAT, SATURATE, job->saturate != 0)
       | FIELD(FORMAT, SCALE_EXP, (uint32_t)job->scale_exp & 0xffu));
    wr(dev, SYSTOLE_PLAN_ADDR,
       FIELD(PLAN, MC_TILES, job->plan.mc_tiles) | FIELD(PLAN, NC_TILES, job->plan.nc_tiles)
       | FIELD(PLAN, KC_LOG2, job->plan.kc_log2) | FIELD(PLAN, ORDER, job->plan.order));
    wr(dev, SYSTOLE_IRQ_ENABLE_ADDR, FIELD(IRQ_ENABLE, DONE, irq != 0));
    wr(dev, SYSTOLE_CTRL_ADDR, FIELD(CTRL, START, 1));
    return SYSTOLE_OK;
}

systole_status systole_wait(const systole_dev *dev, systole_irq_wait_fn *irq_wait,
                            uint32_t max_polls)
{
    uint32_t polls = 0, status;
    for (;;) {
        status = rd(dev, SYSTOLE_STATUS_ADDR);
        if (GET(status, STATUS, DONE))
            break;
        if (max_polls != 0 && ++polls >= max_polls)
            return SYSTOLE_ERR_TIMEOUT;
        if (irq_wait)
            irq_wait(dev->ctx);
    }
    wr(dev, SYSTOLE_STATUS_ADDR, FIELD(STATUS, DONE, 1) | FIELD(STATUS, ERROR, 1));
    if (!GET(status, STATUS, ERROR))
        return SYSTOLE_OK;
    return (systole_status)GET(rd(dev, SYSTOLE_ERROR_CODE_ADDR), ERROR_CODE, CODE);
}

void systole_counters(const systole_dev *dev, systole_counter_values *out)
{
    uint32_t lo;
#define SYSTOLE_READ_COUNTER(name, lo_addr, hi_addr) \
    lo = rd(dev, lo_addr); \
    out->name = (uint64_t)rd(dev, hi_addr) << 32 | lo;
    SYSTOLE_COUNTERS(SYSTOLE_READ_COUNTER)
#undef SYSTOLE_READ_COUNTER
}

const char *systole_strerror(systole_status status)
{
    switch (status) {
#define SYSTOLE_ERROR_CASE(name, code, meaning) case SYSTOLE_ERR_##name: return meaning;
    SYSTOLE_ERROR_CODES(SYSTOLE_ERROR_CASE)
#undef SYSTOLE_ERROR_CASE
    case SYSTOLE_ERR_NO_DEVICE: return "No Systole answers: ID does not read \"SYST\".";
    case SYSTOLE_ERR_VERSION: return "The register interface's major version differs from "
                                     "the one this driver was built for.";
    case SYSTOLE_ERR_TIMEOUT: return "The job did not end within the polls allowed.";
    }
    return "Unknown status.";
}
