/* tokenizer.h — byte-level BPE tokenizer compatible with Hugging Face `tokenizers`.
 *
 *   mr_tokenizer *tok;
 *   mr_tokenizer_load("model_dir", &tok);             // tokenizer.json, or vocab.json + merges.txt
 *   int32_t *ids; size_t n;
 *   mr_tokenizer_encode(tok, text, len, 0, &ids, &n);  // the ids HF's
 * encode(add_special_tokens=False) gives char *s; size_t slen; mr_tokenizer_decode(tok, ids, n, 0,
 * &s, &slen);    // raw bytes; == text for valid UTF-8 input free(ids); free(s);
 * mr_tokenizer_destroy(tok);
 *
 * What a tokenizer.json may contain (anything else is rejected with MR_ERR_UNSUPPORTED, naming it):
 *   model          BPE with merges (strings "a b" or pairs), unk_token/fuse_unk, ignore_merges;
 *                  no dropout, no continuing_subword_prefix / end_of_word_suffix other than "".
 *   normalizer     null, NFC, or a Sequence of those.
 *   pre_tokenizer  Split (Regex via PCRE2 with UTF+UCP, JIT when available, or String; every
 *                  behavior; invert) and ByteLevel (add_prefix_space, use_regex), alone or in a
 *                  Sequence whose last step is ByteLevel.
 *   decoder        ByteLevel (or a Sequence of it).
 *   added_tokens   matched before splitting (leftmost-longest), with special, normalized, lstrip,
 *                  rstrip and single_word as HF applies them.
 *   post_processor ignored: ids never get BOS/EOS added (the chat template writes them itself).
 *
 * Input text must be valid UTF-8 (docs/tokenizer.md): encode rejects anything else with
 * MR_ERR_INVALID and logs the byte offset; callers that want HF's Python behaviour for bad bytes
 * repair first with mr_utf8_lossy(). Decode returns the exact bytes of the tokens, which may end
 * inside a character; ids that name no token are skipped, as HF does.
 *
 * Thread safety: a loaded tokenizer is read-only except for a cache of pre-token results that is
 * used by one encode at a time (others encode without it), so encode and decode may be called
 * from any number of threads concurrently. */
#ifndef MR_TOKENIZER_H
#define MR_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct mr_tokenizer mr_tokenizer;

/* Encode flags. */
enum {
    /* Special added tokens are encoded as plain text (HF `encode_special_tokens = True`);
     * non-special added tokens are still matched. Use for untrusted text placed inside a prompt. */
    MR_TOK_ENCODE_SPECIAL_AS_TEXT = 1u << 0,
    /* Do not use the pre-token cache (benchmarks, and tests of the uncached path). */
    MR_TOK_ENCODE_NO_CACHE = 1u << 1,
};
/* Decode flags. */
enum {
    MR_TOK_DECODE_SKIP_SPECIAL = 1u << 0, /* drop special tokens (HF skip_special_tokens) */
};

/* PATH is a tokenizer.json file, or a directory holding tokenizer.json, or else vocab.json +
 * merges.txt. */
mr_status mr_tokenizer_load(const char *path, mr_tokenizer **out);
mr_status mr_tokenizer_load_json(const char *path, mr_tokenizer **out);
/* The same from memory; NAME is used in messages. */
mr_status mr_tokenizer_load_json_buf(const char *buf, size_t len, const char *name,
                                     mr_tokenizer **out);
/* GPT-2 style pair: ByteLevel pre-tokenizer with the GPT-2 regex, ByteLevel decoder, no added
 * tokens (HF `Tokenizer(BPE.from_file(vocab, merges))` + `ByteLevel(add_prefix_space=False)`). */
mr_status mr_tokenizer_load_vocab_merges(const char *vocab_path, const char *merges_path,
                                         mr_tokenizer **out);
/* MiniMax-M1 rebuilt from its merges.txt (spec §7): byte tokens 0..255 by byte value, merged
 * tokens 256 + rank, special tokens 200000..200025, the o200k-style split regex. */
mr_status mr_tokenizer_load_minimax_merges(const char *merges_path, mr_tokenizer **out);
void mr_tokenizer_destroy(mr_tokenizer *t);

/* Writes the tokenizer.json equivalent of a merges-based source: MINIMAX_MERGES (one merges.txt
 * as for mr_tokenizer_load_minimax_merges) or VOCAB + MERGES (GPT-2 pair); HF `tokenizers` loads
 * the result and encodes exactly as the loaders above do. */
mr_status mr_tokenizer_write_json_minimax(const char *merges_path, const char *out_path);
mr_status mr_tokenizer_write_json_vocab_merges(const char *vocab_path, const char *merges_path,
                                               const char *out_path);

/* Encodes LEN bytes of TEXT into a new array *IDS (caller frees; non-NULL even when *N_IDS is 0).
 */
mr_status mr_tokenizer_encode(mr_tokenizer *t, const char *text, size_t len, unsigned flags,
                              int32_t **ids, size_t *n_ids);
/* Decodes into a new NUL-terminated buffer *TEXT of *LEN bytes (caller frees). */
mr_status mr_tokenizer_decode(const mr_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                              char **text, size_t *len);
/* The bytes token ID decodes to (NULL if ID names no token); valid until destroy. */
const char *mr_tokenizer_token_bytes(const mr_tokenizer *t, int32_t id, size_t *len);

/* One more than the largest id (vocab + added tokens). */
int32_t mr_tokenizer_n_ids(const mr_tokenizer *t);
/* The id of an added token with this exact content, or else of the vocab token whose bytes these
 * are; -1 if none. */
int32_t mr_tokenizer_token_id(const mr_tokenizer *t, const char *s, size_t len);
int mr_tokenizer_is_special(const mr_tokenizer *t, int32_t id);

#endif
