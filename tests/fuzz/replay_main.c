/* Runs a libFuzzer entry point without libFuzzer: on every file given on the command line (the
 * committed corpus) and on N pseudo-random inputs, so CI exercises each target under the
 * sanitizers on every run. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv) {
    int n_random = 20000;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "-runs=", 6) == 0) {
            n_random = atoi(argv[i] + 6);
            continue;
        }
        FILE *f = fopen(argv[i], "rb");
        if (!f) continue;
        static uint8_t buf[1 << 20];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, n);
    }
    uint64_t s = 0x243f6a8885a308d3ull;
    static uint8_t buf[4096];
    for (int r = 0; r < n_random; r++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        size_t n = (size_t)(s >> 33) % sizeof buf;
        for (size_t i = 0; i < n; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            buf[i] = (uint8_t)(s >> 56);
        }
        LLVMFuzzerTestOneInput(buf, n);
    }
    printf("replayed %d files and %d random inputs\n", argc - 1, n_random);
    return 0;
}
