/* libFuzzer target: the OpenAI request-body parser, for both endpoints, on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/openai_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    mr_oai_limits lim = {"MiniMax-M1", 4096, 4096, 200064};
    mr_oai_request r;
    mr_oai_error e;
    mr_oai_kind kind = (data[0] & 1) ? MR_OAI_CHAT : MR_OAI_COMPLETION;
    if (mr_oai_parse(kind, (const char *)data + 1, size - 1, &lim, &r, &e) == MR_OK) {
        /* accepted requests are within the limits */
        if (r.max_tokens > lim.max_context || r.n_stop > MR_OAI_MAX_STOP || r.top_logprobs > 20 ||
            r.sampling.temperature < 0 || r.sampling.temperature > 2)
            __builtin_trap();
        for (int i = 0; i < r.n_prompt_ids; i++)
            if (r.prompt_ids[i] < 0 || r.prompt_ids[i] >= lim.vocab) __builtin_trap();
        mr_oai_request_free(&r);
    } else {
        char *j = mr_oai_error_json(&e);
        if (!j || e.status < 400) __builtin_trap();
        free(j);
    }
    return 0;
}
