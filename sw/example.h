/* The complete minimal client of example.c. */
#ifndef SYSTOLE_EXAMPLE_H
#define SYSTOLE_EXAMPLE_H

#include "systole.h"

#ifdef __cplusplus
extern "C" {
#endif

int systole_example(void *ctx, uint64_t a, uint64_t b, uint64_t c,
                    uint32_t m, uint32_t n, uint32_t k, systole_counter_values *counters);

#ifdef __cplusplus
}
#endif

#endif /* SYSTOLE_EXAMPLE_H */
