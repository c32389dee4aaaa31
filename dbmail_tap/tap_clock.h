/*
 * The two clocks of `dbmail_tap run`, in milliseconds: wall time stamps a
 * failure (it goes to Redis and is compared across hosts), monotonic time
 * measures waits and intervals (a clock step must not stretch or cut one).
 */
#ifndef TAP_CLOCK_H
#define TAP_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t tap_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t tap_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
