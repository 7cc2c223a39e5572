/* Tensor element types with llama.cpp's numbering and block layouts, so
 * GGUF files interoperate both ways. Every row operation accumulates in fp32. */
#ifndef PI_QUANT_H
#define PI_QUANT_H

#include <stddef.h>
#include <stdint.h>

typedef enum pi_type {
    PI_TYPE_F32 = 0,
    PI_TYPE_F16 = 1,
    PI_TYPE_Q4_0 = 2,  /* block of 32: fp16 scale d, 16 bytes of nibbles; x = (q - 8) * d */
    PI_TYPE_Q8_0 = 8,  /* block of 32: fp16 scale d, 32 int8; x = q * d */
    /* K-quants: super-blocks of 256 (docs/formats.md gives the byte layouts). */
    PI_TYPE_Q4_K = 12, /* 144 bytes: 8 sub-blocks of 32, 6-bit scale and min; x = d*sc*q - dmin*m */
    PI_TYPE_Q5_K = 13, /* 176 bytes: as Q4_K with a 5th bit per element from qh */
    PI_TYPE_Q6_K = 14, /* 210 bytes: 16 sub-blocks of 16, int8 scales; x = d*sc*(q - 32) */
    PI_TYPE_BF16 = 30,
} pi_type;

/* Name of a supported type ("f32", "q8_0", ...), or NULL for any other value. */
const char *pi_type_name(int type);
/* Name of any ggml type number (for error messages about unsupported ones), or NULL. */
const char *pi_type_ggml_name(int type);
/* 1 when pi supports computing with this type. */
int pi_type_supported(int type);
/* The most elements any supported type has in a block (the K-quants' 256):
 * a float buffer of this size holds one dequantized block of any type. */
#define PI_MAX_BLOCK_ELEMS 256

/* Elements per block (1 for float types, 32 for Q8_0/Q4_0, 256 for the
 * K-quants) and bytes per block. */
size_t pi_type_block_elems(pi_type type);
size_t pi_type_block_bytes(pi_type type);
/* Bytes of a row of n elements; -1 if n is not a multiple of the block or overflows. */
int pi_row_bytes(pi_type type, uint64_t n, size_t *out);

float pi_fp16_to_fp32(uint16_t h);
uint16_t pi_fp32_to_fp16(float f);   /* round to nearest even, as F16C does */
float pi_bf16_to_fp32(uint16_t h);
uint16_t pi_fp32_to_bf16(float f);   /* round to nearest even, NaN kept quiet */

/* n must be a multiple of the type's block size. pi_quantize_row's K-quant
 * quantizers are simple reference ones (for tests and synthetic models): the
 * layout is llama.cpp's, the choice of scales is not its search. */
void pi_dequantize_row(pi_type type, const void *src, float *dst, size_t n);
void pi_quantize_row(pi_type type, const float *src, void *dst, size_t n);
/* sum_i row[i] * x[i], row dequantized on the fly, fp32 accumulation. */
float pi_dot_row(pi_type type, const void *row, const float *x, size_t n);
/* y[i] += a * row[i] for i < n. */
void pi_axpy_row(pi_type type, float a, const void *row, float *y, size_t n);

#endif
