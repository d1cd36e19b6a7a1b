/* base/clock.h: monotonic and wall clocks in integer units. */
#ifndef BG_CLOCK_H
#define BG_CLOCK_H
#include <stdint.h>
/* Monotonic time in microseconds; for durations only. */
uint64_t bg_now_us(void);
/* Wall-clock UTC as "YYYY-MM-DDTHH:MM:SS.mmmZ" into |out| (at least 32 bytes). */
void bg_wall_iso8601(char *out, unsigned long size);
#endif /* BG_CLOCK_H */
