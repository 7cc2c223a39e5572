/* pictl model import-hf DIR -o OUT [--type T]: a Hugging Face checkpoint
 * folder to GGUF (hf_import.c does the work; this parses and reports). */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "commands.h"
#include "quant.h"
#ifdef PI_HAVE_HF_IMPORT
#include "hf_import.h"
#endif

static void usage(FILE *out)
{
    fputs("usage: pictl model import-hf DIR -o OUT.gguf [--type f32|f16|bf16|q8_0|q4_0|q4_k]\n"
          "  Converts a Hugging Face LLaMA-family checkpoint folder to GGUF with llama.cpp's names.\n"
          "  DIR              config.json, *.safetensors (F32/F16/BF16, with or without\n"
          "                   model.safetensors.index.json), tokenizer.json, tokenizer_config.json\n"
          "                   (optional: special tokens, chat template)\n"
          "  -o, --output OUT the GGUF to write\n"
          "  --type T         tensor type of the weight matrices (default f16); rows that are not\n"
          "                   whole blocks of T stay f16\n"
          "  Architectures: LlamaForCausalLM, MistralForCausalLM (hidden_act silu or relu),\n"
          "  BambooForCausalLM (dReLU). Progress goes to stderr.\n", out);
}

#ifdef PI_HAVE_HF_IMPORT
static int parse_type(const char *s, pi_type *t)
{
    static const pi_type types[] = {PI_TYPE_F32, PI_TYPE_F16, PI_TYPE_BF16, PI_TYPE_Q8_0, PI_TYPE_Q4_0,
                                    PI_TYPE_Q4_K};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcasecmp(s, pi_type_name((int)types[i]))) {
            *t = types[i];
            return 0;
        }
    return -1;
}

/* One line rewritten in place on a terminal, a line per tenth otherwise. */
static void show_progress(void *ctx, size_t i, size_t n, const char *name, uint64_t bytes)
{
    int tty = *(int *)ctx;
    if (tty)
        fprintf(stderr, "\rtensor %zu/%zu %-32s %.1f MB written%s", i, n, name, (double)bytes / 1e6,
                i == n ? "\n" : "");
    else if (i == n || (i * 10 / n) != ((i - 1) * 10 / n))
        fprintf(stderr, "tensor %zu/%zu %s %.1f MB written\n", i, n, name, (double)bytes / 1e6);
}
#endif

int cmd_model_import_hf(int argc, char **argv)
{
    const char *dir = NULL, *out = NULL;
    const char *type_s = "f16";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (a[0] != '-') {
            if (dir) {
                fprintf(stderr, "pictl model import-hf: give one DIR (see --help)\n");
                return 2;
            }
            dir = a;
            continue;
        }
        if (!v) {
            fprintf(stderr, "pictl model import-hf: %s needs a value (see --help)\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "-o") || !strcmp(a, "--output")) out = v;
        else if (!strcmp(a, "--type")) type_s = v;
        else {
            fprintf(stderr, "pictl model import-hf: unknown option %s (see --help)\n", a);
            return 2;
        }
    }
    if (!dir || !out) {
        fprintf(stderr, "pictl model import-hf: DIR and -o are required (see --help)\n");
        return 2;
    }
#ifdef PI_HAVE_HF_IMPORT
    pi_type type;
    if (parse_type(type_s, &type) < 0) {
        fprintf(stderr, "pictl model import-hf: --type %s: use f32, f16, bf16, q8_0, q4_0 or q4_k\n", type_s);
        return 2;
    }
    pi_error err = {{0}};
    hf_import_info info;
    int tty = isatty(STDERR_FILENO);
    if (hf_import(dir, out, type, show_progress, &tty, &info, &err) < 0) {
        fprintf(stderr, "pictl model import-hf: %s\n", err.msg);
        return 1;
    }
    printf("wrote %s: %s, dim %u, ffn %u, %u layers, %u heads, %u kv heads, vocab %u (%s tokenizer), ctx %u, "
           "%s output, %s weights, %s, %.1f MB\n", out, info.arch, info.dim, info.n_ff, info.n_layers, info.n_heads,
           info.n_kv_heads, info.n_vocab, info.tok_model, info.n_ctx, info.tied ? "tied" : "separate",
           pi_type_name((int)type), pi_act_name(info.act), (double)info.bytes / 1e6);
    if (info.n_fallback)
        printf("note: %u tensors kept as f16: their rows are not whole %s blocks\n", info.n_fallback,
               pi_type_name((int)type));
    return 0;
#else
    (void)type_s;
    fprintf(stderr, "pictl model import-hf: this pictl was built without libcjson (scripts/setup.sh installs it; "
                    "then rebuild)\n");
    return 1;
#endif
}
