/* A complete minimal Systole client: probe the accelerator, run one GEMM
 * C[m x n] (fp32) = A[m x k] (E4M3) . B[k x n] (E4M3) on packed row-major operands at
 * the bus addresses a, b and c, and read the job's counters. Returns a systole_status.
 * The integrator provides systole_mmio_read32/systole_mmio_write32 (systole.h). */
#include "example.h"

int systole_example(void *ctx, uint64_t a, uint64_t b, uint64_t c,
                    uint32_t m, uint32_t n, uint32_t k, systole_counter_values *counters)
{
    systole_dev dev;
    systole_gemm job;
    systole_status status;

    dev.ctx = ctx;
    status = systole_probe(&dev);
    if (status != SYSTOLE_OK)
        return status;

    job.m = m;
    job.n = n;
    job.k = k;
    job.a_addr = a;
    job.b_addr = b;
    job.c_addr = c;
    job.a_stride = k;               /* bytes per row of A */
    job.b_stride = n;
    job.c_stride = 4 * n;           /* fp32 results */
    job.a_format = SYSTOLE_E4M3;
    job.b_format = SYSTOLE_E4M3;
    job.out_format = SYSTOLE_OUT_FP32;
    job.saturate = 1;
    job.scale_exp = 0;
    job.plan = systole_plan_minimal(&dev);

    status = systole_gemm_start(&dev, &job, 0);
    if (status == SYSTOLE_OK)
        status = systole_wait(&dev, 0, 1000000u);   /* poll STATUS */
    if (status == SYSTOLE_OK)
        systole_counters(&dev, counters);
    return status;
}
