/* The time now on clock clk, in nanoseconds: CLOCK_MONOTONIC for
 * intervals and the kernel's event times, CLOCK_REALTIME for dates. */
#ifndef SEAMS_CLOCK_H
#define SEAMS_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t now_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

#endif
