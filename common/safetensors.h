/* safetensors.h — reading and writing the safetensors format.
 *
 * File layout: u64 little-endian header length N, N bytes of UTF-8 JSON
 *   {"__metadata__": {str: str}?, "<name>": {"dtype": "BF16", "shape": [..], "data_offsets": [b,
 * e]}} then the data section; offsets are relative to its start.
 *
 * mr_st_open() maps the file read-only and validates everything before returning: header length
 * against the file size, JSON syntax (duplicate keys rejected), dtype names, shapes (at most
 * MR_ST_MAX_DIMS dims, products checked for overflow), that every tensor's byte range equals
 * prod(shape) * dtype size and lies inside the data section, and that no two tensors overlap.
 * Errors are logged once, naming the file and the tensor, and returned as MR_ERR_FORMAT/IO.
 * After a successful open, mr_st_data() pointers may be dereferenced for the tensor's length.
 *
 * Usage:
 *   mr_st_file *f;  MR_CHECK(mr_st_open("model-00001-of-00004.safetensors", &f));
 *   const mr_st_tensor *t = mr_st_find(f, "lm_head.weight");
 *   const void *bytes = mr_st_data(f, t);   // valid until mr_st_close(f)
 */
#ifndef MR_SAFETENSORS_H
#define MR_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/dtype.h"
#include "common/status.h"

#define MR_ST_MAX_DIMS   8
#define MR_ST_MAX_HEADER (100u << 20) /* the format's own limit: 100 MB of JSON */

typedef struct mr_st_tensor {
    const char *name; /* points into the file object; valid until close */
    mr_dtype dtype;
    int ndim;
    int64_t shape[MR_ST_MAX_DIMS];
    uint64_t begin, end; /* byte range within the data section */
} mr_st_tensor;

typedef struct mr_st_file mr_st_file;

mr_status mr_st_open(const char *path, mr_st_file **out);
void mr_st_close(mr_st_file *f);

const char *mr_st_path(const mr_st_file *f);
uint64_t mr_st_file_size(const mr_st_file *f);
int mr_st_count(const mr_st_file *f);
const mr_st_tensor *mr_st_at(const mr_st_file *f, int i);
const mr_st_tensor *mr_st_find(const mr_st_file *f, const char *name);
const void *mr_st_data(const mr_st_file *f, const mr_st_tensor *t);
/* Asks the kernel to read a tensor's byte range ahead of use (files are mapped without
 * readahead, so only the tensors used are ever read). */
void mr_st_prefetch(const mr_st_file *f, const mr_st_tensor *t);
/* Value of a "__metadata__" entry, or NULL. */
const char *mr_st_metadata(const mr_st_file *f, const char *key);
uint64_t mr_st_nelems(const mr_st_tensor *t);

/* Parse and validate a header held in memory (`json`, `len` bytes) for a file whose data section
 * has `data_size` bytes. Used by mr_st_open and by the fuzz target. `origin` names the file in
 * error messages. On success *out receives an object with no mapping (mr_st_data returns NULL). */
mr_status mr_st_parse_header(const char *origin, const char *json, size_t len, uint64_t data_size,
                             mr_st_file **out);

/* ---- writing --------------------------------------------------------------------------------- */

/* Fills `dst` (nbytes) with the tensor's data when the writer reaches it. */
typedef mr_status (*mr_st_fill_fn)(void *user, const char *name, void *dst, size_t nbytes);

typedef struct mr_st_write_item {
    const char *name;
    mr_dtype dtype;
    int ndim;
    int64_t shape[MR_ST_MAX_DIMS];
    mr_st_fill_fn fill;
    void *user;
} mr_st_write_item;

/* Write a safetensors file with the items in order (data offsets follow item order). */
mr_status mr_st_write(const char *path, const mr_st_write_item *items, int n_items,
                      const char *const *metadata_kv, int n_metadata_pairs);

#endif
