/* utf8.h — UTF-8 validation and repair for text that crosses the API boundary.
 *
 *   size_t bad = mr_utf8_check(s, n);          // n if valid, else offset of the first bad byte
 *   size_t ok = mr_utf8_complete_prefix(s, n); // for streaming: bytes that form whole characters
 *   mr_utf8_lossy(s, n, &out, &out_len);       // invalid sequences -> U+FFFD (Rust
 * from_utf8_lossy)
 *
 * "Valid" is RFC 3629: no overlong forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF —
 * the same rule as PCRE2's UTF check, Rust's str and Python's strict decoder. */
#ifndef MR_UTF8_H
#define MR_UTF8_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

/* Length (1..4) of the valid character at s[0..n), or 0 if the bytes there are not one. */
size_t mr_utf8_char_len(const unsigned char *s, size_t n);
/* n if s[0..n) is valid UTF-8, else the offset of the first byte that is not part of a valid
 * character. */
size_t mr_utf8_check(const char *s, size_t n);
/* The longest prefix of s that does not end inside a character that later bytes could still
 * complete: used when streaming decoded tokens, which may split a multi-byte character. Bytes that
 * can never become valid are not held back. */
size_t mr_utf8_complete_prefix(const char *s, size_t n);
/* A copy of s with every maximal invalid subsequence replaced by U+FFFD (the Unicode "maximal
 * subpart" practice, as Rust's String::from_utf8_lossy and Python's errors="replace"). The copy is
 * NUL-terminated; *out_len excludes the NUL. */
mr_status mr_utf8_lossy(const char *s, size_t n, char **out, size_t *out_len);
/* Decodes the character at s (which must be valid, length from mr_utf8_char_len). */
uint32_t mr_utf8_decode(const unsigned char *s, size_t len);

#endif
