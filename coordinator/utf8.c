/* utf8.c — UTF-8 validation, streaming prefix and lossy repair (see utf8.h). */
#include "coordinator/utf8.h"

#include <stdlib.h>
#include <string.h>

/* For a lead byte: the number of bytes of its character (0 if it cannot start one) and the
 * allowed range of the second byte (which excludes overlongs, surrogates and > U+10FFFF). */
static int lead_info(unsigned char c, unsigned char *lo, unsigned char *hi) {
    *lo = 0x80;
    *hi = 0xbf;
    if (c < 0x80) return 1;
    if (c < 0xc2) return 0;
    if (c < 0xe0) return 2;
    if (c < 0xf0) {
        if (c == 0xe0) *lo = 0xa0;
        if (c == 0xed) *hi = 0x9f;
        return 3;
    }
    if (c < 0xf5) {
        if (c == 0xf0) *lo = 0x90;
        if (c == 0xf4) *hi = 0x8f;
        return 4;
    }
    return 0;
}

/* Number of bytes from s[0] that form a valid (possibly incomplete) prefix of a character, and
 * the full length that character needs; returns 0 when s[0] cannot start a character. */
static size_t valid_prefix(const unsigned char *s, size_t n, size_t *need) {
    unsigned char lo, hi;
    int len = lead_info(s[0], &lo, &hi);
    *need = (size_t)len;
    if (len == 0) return 0;
    size_t k = 1;
    while (k < (size_t)len && k < n) {
        unsigned char c = s[k];
        if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xbf)) break;
        k++;
    }
    return k;
}

size_t mr_utf8_char_len(const unsigned char *s, size_t n) {
    if (n == 0) return 0;
    if (s[0] < 0x80) return 1;
    size_t need, k = valid_prefix(s, n, &need);
    return k == need ? k : 0;
}

size_t mr_utf8_check(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        /* ASCII fast path, 8 bytes at a time */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t len = mr_utf8_char_len(s + i, n - i);
        if (len == 0) return i;
        i += len;
    }
    return n;
}

size_t mr_utf8_complete_prefix(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    /* a character is at most 4 bytes: only a lead among the last 3 bytes can be incomplete */
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        size_t at = n - back;
        if ((s[at] & 0xc0) == 0x80) continue; /* continuation byte: look further back */
        size_t need, k = valid_prefix(s + at, back, &need);
        if (need > back && k == back) return at; /* valid so far, more bytes needed */
        return n;
    }
    return n;
}

uint32_t mr_utf8_decode(const unsigned char *s, size_t len) {
    switch (len) {
    case 1:
        return s[0];
    case 2:
        return ((uint32_t)(s[0] & 0x1f) << 6) | (s[1] & 0x3f);
    case 3:
        return ((uint32_t)(s[0] & 0x0f) << 12) | ((uint32_t)(s[1] & 0x3f) << 6) | (s[2] & 0x3f);
    default:
        return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3f) << 12) |
               ((uint32_t)(s[2] & 0x3f) << 6) | (s[3] & 0x3f);
    }
}

mr_status mr_utf8_lossy(const char *str, size_t n, char **out, size_t *out_len) {
    const unsigned char *s = (const unsigned char *)str;
    /* each bad byte becomes at most 3 bytes */
    if (n > (SIZE_MAX - 1) / 3) return MR_ERR_NOMEM;
    char *o = malloc(3 * n + 1);
    if (!o) return MR_ERR_NOMEM;
    size_t i = 0, j = 0;
    while (i < n) {
        size_t len = mr_utf8_char_len(s + i, n - i);
        if (len) {
            memcpy(o + j, s + i, len);
            i += len;
            j += len;
            continue;
        }
        size_t need, k = valid_prefix(s + i, n - i, &need);
        i += k ? k : 1; /* the maximal subpart: a lead and the continuations valid so far */
        memcpy(o + j, "\xef\xbf\xbd", 3);
        j += 3;
    }
    o[j] = '\0';
    *out = o;
    *out_len = j;
    return MR_OK;
}
