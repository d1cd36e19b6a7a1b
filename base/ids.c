/* base/ids.c */
#include "base/ids.h"

bool bg_city_id_valid(const char *s, size_t len)
{
    if (len == 0 || len > BG_CITY_MAX || s[0] < 'a' || s[0] > 'z') {
        return false;
    }
    for (size_t i = 1; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
            return false;
        }
    }
    return true;
}
