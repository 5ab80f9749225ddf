/* libFuzzer target: the safetensors header parser. Accepted headers must describe tensors that
 * lie inside the data section and do not overlap. */
#include <stddef.h>
#include <stdint.h>

#include "common/log.h"
#include "common/safetensors.h"

static void quiet(void *u, mr_log_level l, unsigned s, const char *line) {
    (void)u, (void)l, (void)s, (void)line;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mr_log_set_sink(quiet, NULL);
    if (size < 2) return 0;
    uint64_t data_size = (uint64_t)data[0] << 8 | data[1];
    mr_st_file *f = NULL;
    if (mr_st_parse_header("fuzz", (const char *)data + 2, size - 2, data_size, &f) == MR_OK) {
        for (int i = 0; i < mr_st_count(f); i++) {
            const mr_st_tensor *t = mr_st_at(f, i);
            if (t->end > data_size || t->begin > t->end) __builtin_trap();
            (void)mr_st_find(f, t->name);
        }
        mr_st_close(f);
    }
    return 0;
}
