/* ggml's k-quant reference quantizers (quantize_row_q4_K_ref, quantize_row_q6_K_ref in
 * ggml-quants.c) as a filter: f32 values on stdin (whole super-blocks of 256), the blocks on
 * stdout. Built by scripts/make-quant-reference against llama.cpp's own ggml-quants.c with
 * -ffp-contract=off, so that no `a * b + c` is fused into one rounding (Rust never fuses, and
 * a fused multiply-add can move a code across a rounding boundary).
 *
 * Usage: quant-ref q4_k|q6_k < values.f32 > blocks */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ggml.h"
#include "ggml-quants.h"
#include "ggml-common.h"

/* The ggml symbols ggml-quants.c links against besides its own; the reference quantizers call
 * none of them. */
void ggml_abort(const char *file, int line, const char *fmt, ...) { (void)fmt; fprintf(stderr, "ggml_abort at %s:%d\n", file, line); abort(); }
size_t ggml_row_size(enum ggml_type type, int64_t ne) { (void)type; (void)ne; abort(); }
size_t ggml_type_size(enum ggml_type type) { (void)type; abort(); }
const char * ggml_type_name(enum ggml_type type) { (void)type; abort(); }

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: quant-ref q4_k|q6_k < values.f32 > blocks\n"); return 2; }
    size_t cap = 1 << 16, n = 0, got;
    float *x = malloc(cap * sizeof(float));
    while (x && (got = fread(x + n, sizeof(float), cap - n, stdin)) > 0) {
        n += got;
        if (n == cap) { cap *= 2; x = realloc(x, cap * sizeof(float)); }
    }
    if (!x || n % QK_K) { fprintf(stderr, "quant-ref: %zu values are not whole super-blocks of %d\n", n, QK_K); return 2; }
    if (!strcmp(argv[1], "q4_k")) {
        block_q4_K *y = malloc(n / QK_K * sizeof *y);
        quantize_row_q4_K_ref(x, y, (int64_t)n);
        fwrite(y, sizeof *y, n / QK_K, stdout);
    } else if (!strcmp(argv[1], "q6_k")) {
        block_q6_K *y = malloc(n / QK_K * sizeof *y);
        quantize_row_q6_K_ref(x, y, (int64_t)n);
        fwrite(y, sizeof *y, n / QK_K, stdout);
    } else {
        fprintf(stderr, "quant-ref: unknown type %s\n", argv[1]);
        return 2;
    }
    return 0;
}
