/* pictl model: offline model tools.
 *   import-llama2c --checkpoint F --tokenizer F -o OUT [--type T] [--act A]
 *   import-hf DIR -o OUT [--type T] (cmd_import_hf.c)
 *   inspect FILE
 *   synth --shape S --type T -o OUT [...] (cmd_synth.c) */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "gguf.h"
#include "llama2c.h"
#include "model.h"

static int parse_type(const char *s, pi_type *t)
{
    static const pi_type types[] = {PI_TYPE_F32, PI_TYPE_F16, PI_TYPE_BF16, PI_TYPE_Q8_0, PI_TYPE_Q4_0};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(s, pi_type_name((int)types[i]))) {
            *t = types[i];
            return 0;
        }
    return -1;
}

static int parse_act(const char *s, pi_act *a)
{
    for (int i = PI_ACT_SILU; i <= PI_ACT_RELU_BOTH; i++)
        if (!strcmp(s, pi_act_name((pi_act)i))) {
            *a = (pi_act)i;
            return 0;
        }
    return -1;
}

static int import_llama2c(int argc, char **argv)
{
    const char *ckpt = NULL, *tok = NULL, *out = NULL;
    pi_type type = PI_TYPE_F32;
    pi_act act = PI_ACT_SILU;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: pictl model import-llama2c --checkpoint MODEL.bin --tokenizer TOK.bin -o OUT.gguf\n"
                   "                                  [--type f32|f16|bf16|q8_0|q4_0] [--act silu|relu|relu_both]\n"
                   "  Converts a llama2.c checkpoint and its tokenizer to GGUF (docs/llama2c-import.md).\n"
                   "  --checkpoint F   llama2.c model file (.bin)\n"
                   "  --tokenizer F    llama2.c tokenizer file (tokenizer.bin)\n"
                   "  -o, --output OUT the GGUF to write\n"
                   "  --type T         tensor type of the weight matrices (default f32)\n"
                   "  --act A          FFN activation recorded in the file (default silu)\n");
            return 0;
        }
        if (!v) {
            fprintf(stderr, "pictl model import-llama2c: %s needs a value (see --help)\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--checkpoint")) ckpt = v;
        else if (!strcmp(a, "--tokenizer")) tok = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) out = v;
        else if (!strcmp(a, "--type")) {
            if (parse_type(v, &type) < 0) {
                fprintf(stderr, "pictl model import-llama2c: --type %s: use f32, f16, bf16, q8_0 or q4_0\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--act")) {
            if (parse_act(v, &act) < 0) {
                fprintf(stderr, "pictl model import-llama2c: --act %s: use silu, relu or relu_both\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "pictl model import-llama2c: unknown option %s (see --help)\n", a);
            return 2;
        }
    }
    if (!ckpt || !tok || !out) {
        fprintf(stderr, "pictl model import-llama2c: --checkpoint, --tokenizer and -o are required\n");
        return 2;
    }
    pi_error err = {{0}};
    llama2c_info info;
    if (llama2c_import(ckpt, tok, out, type, act, &info, &err) < 0) {
        fprintf(stderr, "pictl model import-llama2c: %s\n", err.msg);
        return 1;
    }
    printf("wrote %s: dim %u, hidden %u, %u layers, %u heads, %u kv heads, vocab %u, seq_len %u, %s output, "
           "%s weights, %s\n", out, info.dim, info.hidden_dim, info.n_layers, info.n_heads, info.n_kv_heads,
           info.vocab_size, info.seq_len, info.shared_classifier ? "tied" : "separate",
           pi_type_name((int)type), pi_act_name(act));
    if (info.n_fallback)
        printf("note: %u tensors kept as f16: their rows are not whole %s blocks\n", info.n_fallback,
               pi_type_name((int)type));
    return 0;
}

/* A string value, printable characters only, cut at max bytes. */
static void print_str(gguf_str s, size_t max)
{
    size_t n = s.len < max ? (size_t)s.len : max;
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c >= 0x20 && c != 0x7f && c != '"' && c != '\\')
            putchar(c);
        else
            printf("\\x%02x", c);
    }
    printf(s.len > max ? "\"..." : "\"");
}

static int type_is_int(gguf_type t)
{
    return t <= GGUF_TYPE_INT32 || t == GGUF_TYPE_UINT64 || t == GGUF_TYPE_INT64;
}

static int type_is_unsigned(gguf_type t)
{
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_UINT32 || t == GGUF_TYPE_UINT64;
}

static void print_kv(const gguf_kv *kv)
{
    printf("  %-44.*s ", (int)(kv->key.len < 200 ? kv->key.len : 200), kv->key.ptr);
    switch (kv->type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
        printf("%" PRIu64, kv->v.u64);
        break;
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
        printf("%" PRId64, kv->v.i64);
        break;
    case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64:
        printf("%g", kv->v.f64);
        break;
    case GGUF_TYPE_BOOL:
        printf("%s", kv->v.b ? "true" : "false");
        break;
    case GGUF_TYPE_STRING:
        print_str(kv->v.str, 64);
        break;
    case GGUF_TYPE_ARRAY:
        printf("[%" PRIu64 " x %s]", kv->v.arr.n, gguf_type_name(kv->v.arr.type));
        for (uint64_t i = 0; i < kv->v.arr.n && i < 4; i++) {
            putchar(' ');
            if (kv->v.arr.type == GGUF_TYPE_STRING)
                print_str(kv->v.arr.strs[i], 16);
            else if (type_is_int(kv->v.arr.type))
                printf("%" PRId64, gguf_arr_i64(kv, i));
            else if (kv->v.arr.type != GGUF_TYPE_BOOL)
                printf("%g", gguf_arr_f64(kv, i));
        }
        if (kv->v.arr.n > 4)
            printf(" ...");
        break;
    }
    putchar('\n');
}

static void print_hparams(const pi_model *m)
{
    printf("architecture: %s\nhyperparameters:\n", m->arch);
    printf("  vocab_size           %u\n", m->n_vocab);
    printf("  embedding_length     %u\n", m->dim);
    printf("  block_count          %u\n", m->n_layers);
    printf("  head_count           %u\n", m->n_heads);
    printf("  head_count_kv        %u\n", m->n_kv_heads);
    printf("  head_dim             %u\n", m->head_dim);
    printf("  feed_forward_length  %u\n", m->n_ff);
    printf("  context_length       %u\n", m->n_ctx);
    printf("  rms_norm_eps         %g\n", m->norm_eps);
    printf("  rope_freq_base       %g\n", m->rope_theta);
    printf("  ffn_activation       %s\n", pi_act_name(m->act));
    printf("  output               %s\n", m->tied_output ? "tied to token_embd" : "output.weight");
}

static void print_tokenizer(const gguf_file *f)
{
    const gguf_kv *model = gguf_find_kv(f, "tokenizer.ggml.model");
    const gguf_kv *toks = gguf_find_kv(f, "tokenizer.ggml.tokens");
    const gguf_kv *types = gguf_find_kv(f, "tokenizer.ggml.token_type");
    printf("tokenizer:\n");
    if (!model || model->type != GGUF_TYPE_STRING) {
        printf("  none (no tokenizer.ggml.model)\n");
        return;
    }
    printf("  model                ");
    print_str(model->v.str, 32);
    printf("\n  tokens               %" PRIu64 "\n",
           toks && toks->type == GGUF_TYPE_ARRAY ? toks->v.arr.n : 0);
    if (types && types->type == GGUF_TYPE_ARRAY && type_is_int(types->v.arr.type)) {
        /* llama.cpp's token types: 1 normal, 2 unknown, 3 control, 4 user, 5 unused, 6 byte */
        static const char *names[7] = {"undefined", "normal", "unknown", "control", "user", "unused", "byte"};
        uint64_t count[8] = {0};
        for (uint64_t i = 0; i < types->v.arr.n; i++) {
            int64_t t = gguf_arr_i64(types, i);
            count[t >= 0 && t < 7 ? t : 7]++;
        }
        printf("  token types         ");
        for (int t = 0; t < 8; t++)
            if (count[t])
                printf(" %s %" PRIu64, t < 7 ? names[t] : "other", count[t]);
        printf("\n");
    }
    const char *ids[] = {"bos_token_id", "eos_token_id", "unknown_token_id", "add_space_prefix", "add_bos_token"};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        char key[64];
        snprintf(key, sizeof key, "tokenizer.ggml.%s", ids[i]);
        const gguf_kv *kv = gguf_find_kv(f, key);
        if (!kv)
            continue;
        if (kv->type == GGUF_TYPE_BOOL)
            printf("  %-20s %s\n", ids[i], kv->v.b ? "true" : "false");
        else if (type_is_int(kv->type))
            printf("  %-20s %" PRId64 "\n", ids[i], type_is_unsigned(kv->type) ? (int64_t)kv->v.u64 : kv->v.i64);
    }
}

static void print_tensors(const gguf_file *f)
{
    size_t n = gguf_n_tensors(f);
    uint64_t total = 0, params = 0;
    printf("tensors:\n  %-32s %-6s %-20s %12s\n", "name", "type", "shape", "bytes");
    for (size_t i = 0; i < n; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char shape[96];
        int k = snprintf(shape, sizeof shape, "[%" PRIu64, t->ne[0]);
        uint64_t elems = t->ne[0];
        for (uint32_t d = 1; d < t->n_dims && d < GGUF_MAX_DIMS; d++) {
            k += snprintf(shape + k, sizeof shape - (size_t)k, ",%" PRIu64, t->ne[d]);
            elems *= t->ne[d];
        }
        snprintf(shape + k, sizeof shape - (size_t)k, "]");
        const char *tn = pi_type_name((int)t->type);
        printf("  %-32.*s %-6s %-20s %12zu\n", (int)(t->name.len < 64 ? t->name.len : 64), t->name.ptr,
               tn ? tn : "?", shape, t->size);
        total += t->size;
        params += elems;
    }
    printf("total: %zu tensors, %" PRIu64 " parameters, %" PRIu64 " bytes (%.2f MiB)\n", n, params, total,
           (double)total / (1024.0 * 1024.0));
}

static int inspect(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        int help = argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"));
        if (help)
            printf("usage: pictl model inspect FILE.gguf\n"
                   "  Prints a GGUF's metadata, the model's shape, its tokenizer and its tensors.\n");
        else
            fprintf(stderr, "pictl model inspect: give one FILE.gguf (see --help)\n");
        return help ? 0 : 2;
    }
    const char *path = argv[1];
    pi_error err = {{0}}, merr = {{0}};
    gguf_file *f = gguf_open(path, &err);
    if (!f) {
        fprintf(stderr, "pictl model inspect: %s\n", err.msg);
        return 1;
    }
    printf("file: %s (%s v%u, %zu bytes, alignment %zu)\n", path, gguf_is_powerinfer(f) ? "PowerInfer GGUF" : "GGUF",
           gguf_version(f), gguf_file_size(f), gguf_alignment(f));
    printf("metadata (%zu keys):\n", gguf_n_kv(f));
    for (size_t i = 0; i < gguf_n_kv(f); i++)
        print_kv(gguf_kv_at(f, i));

    pi_model *m = model_open(path, &merr);
    if (m) {
        print_hparams(m);
        model_close(&m);
    } else {
        printf("not a loadable llama model: %s\n", merr.msg);
    }
    print_tokenizer(f);
    print_tensors(f);
    gguf_close(&f);
    return 0;
}

int cmd_model(int argc, char **argv)
{
    const char *usage = "usage: pictl model import-llama2c --checkpoint F --tokenizer F -o OUT.gguf [--type T] [--act A]\n"
                        "       pictl model import-hf DIR -o OUT.gguf [--type T]\n"
                        "       pictl model inspect FILE.gguf\n"
                        "       pictl model synth --shape S --type T -o OUT.gguf [--active A] [--skew Z] [--seed S] [--layers N] [--plain]\n"
                        "       pictl model profile -m MODEL --corpus FILE [--tokens N] [--ctx C] [-o SIDECAR]\n"
                        "       pictl model plan -m MODEL --vram-budget GIB [--freq SIDECAR] [--max-seqs S] [--n-ctx C] [--gpu-backend B]\n"
                        "       pictl model set-template MODEL.gguf --file TEMPLATE -o OUT.gguf\n"
                        "  Each subcommand's --help describes its flags.\n";
    if (argc < 2) {
        fprintf(stderr, "pictl model: name a subcommand (see pictl model --help)\n");
        return 2;
    }
    if (!strcmp(argv[1], "import-llama2c"))
        return import_llama2c(argc - 1, argv + 1);
    if (!strcmp(argv[1], "import-hf"))
        return cmd_model_import_hf(argc - 1, argv + 1);
    if (!strcmp(argv[1], "inspect"))
        return inspect(argc - 1, argv + 1);
    if (!strcmp(argv[1], "synth"))
        return cmd_model_synth(argc - 1, argv + 1);
    if (!strcmp(argv[1], "profile"))
        return cmd_model_profile(argc - 1, argv + 1);
    if (!strcmp(argv[1], "plan"))
        return cmd_model_plan(argc - 1, argv + 1);
    if (!strcmp(argv[1], "set-template"))
        return cmd_model_set_template(argc - 1, argv + 1);
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(usage, stdout);
        return 0;
    }
    fprintf(stderr, "pictl model: unknown subcommand '%s' (see pictl model --help)\n", argv[1]);
    return 2;
}
