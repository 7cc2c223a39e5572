/* Pre-tokenizers of the byte-level BPE tokenizer. Each tokenizer.ggml.pre
 * family is a list of passes; a pass splits every piece of the pass before
 * it, and is a hand-written scanner for one of llama.cpp's regular
 * expressions (llama-vocab.cpp), checked against llama.cpp's
 * unicode_regex_split on random text (docs/tokenizer.md). */
#include "bpe_pre.h"

#include <string.h>

#include "unicode_table.h"

/* One pre-tokenizer pass; see bpe_pass_run. */
typedef enum bpe_pass {
    PASS_GPT2,          /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    PASS_LLAMA3,        /* Llama 3's expression, \p{N}{1,3} */
    PASS_QWEN2,         /* the same with \p{N} (one digit a word) */
    PASS_PUNCT_DEFAULT, /* [\p{P}\$\+<=>\^~\|]+ */
    PASS_PUNCT_FALCON,  /* [\p{P}\$\+<=>\^~\|`]+ */
    PASS_NUMBERS,       /* \p{N}+ */
    PASS_NUMBER,        /* \p{N} */
    PASS_DIGITS3,       /* [0-9][0-9][0-9] */
    PASS_CRLF,          /* [\r\n] */
    PASS_WS_LETTERS,    /* \s?\p{L}+ */
    PASS_WS_PUNCT,      /* \s?\p{P}+ */
    PASS_CJK,           /* [一-龥ࠀ-一가-퟿]+ */
    PASS_DS_LETTERS,    /* \s?[A-Za-zµÀ-Ö...]+ (DeepSeek LLM's cased letters) */
    PASS_DS_PUNCT,      /* \s?[!-/:-~！-／：-～‘-‟　-。]+ */
    PASS_TRAIL_WS,      /* \s+$ */
} bpe_pass;

#define BPE_MAX_PASSES 6

struct bpe_pre {
    const char *names; /* tokenizer.ggml.pre values, '|'-separated */
    bool ignore_merges; /* a word that is a token is taken whole (Llama 3) */
    bool add_bos;       /* default of tokenizer.ggml.add_bos_token */
    int n_passes;
    bpe_pass passes[BPE_MAX_PASSES];
};

/* The pre-tokenizers of llama.cpp (llama-vocab.cpp) that pi supports. */
static const bpe_pre bpe_pres[] = {
    {"gpt-2|mpt|olmo|jais|phi-2|roberta-bpe|gigachat|jina-es|jina-de|jina-v1-en|jina-v2-es|"
     "jina-v2-de|jina-v2-code", false, false, 1, {PASS_GPT2}},
    {"default", false, false, 4, {PASS_PUNCT_DEFAULT, PASS_GPT2, PASS_NUMBERS, PASS_DIGITS3}},
    {"llama3|llama-v3|llama-bpe|falcon3|dbrx|smaug-bpe", true, true, 1, {PASS_LLAMA3}},
    {"qwen2|stablelm2", false, false, 1, {PASS_QWEN2}},
    {"falcon", false, false, 3, {PASS_PUNCT_FALCON, PASS_GPT2, PASS_DIGITS3}},
    {"starcoder|refact|command-r|smollm|codeshell|exaone|minerva", false, false, 2,
     {PASS_NUMBER, PASS_GPT2}},
    {"deepseek-coder", false, false, 5,
     {PASS_CRLF, PASS_WS_LETTERS, PASS_WS_PUNCT, PASS_CJK, PASS_NUMBER}},
    {"deepseek-llm", false, false, 6,
     {PASS_CRLF, PASS_DS_LETTERS, PASS_DS_PUNCT, PASS_TRAIL_WS, PASS_CJK, PASS_NUMBERS}},
};

const bpe_pre *bpe_pre_find(const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof bpe_pres / sizeof bpe_pres[0]; i++) {
        for (const char *p = bpe_pres[i].names; *p;) {
            const char *e = strchr(p, '|');
            size_t l = e ? (size_t)(e - p) : strlen(p);
            if (l == n && memcmp(p, name, n) == 0)
                return &bpe_pres[i];
            p += l + (e != NULL);
        }
    }
    return NULL;
}

bool bpe_pre_ignore_merges(const bpe_pre *p) { return p->ignore_merges; }
bool bpe_pre_add_bos(const bpe_pre *p) { return p->add_bos; }

/* llama.cpp's decoder: the lead byte gives the length; a missing
 * continuation byte makes the lead byte alone an invalid character (U+FFFD).
 * Overlong forms and surrogates are taken as they come. */
size_t bpe_pre_decode(const uint8_t *s, size_t n, uint32_t *cp)
{
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t l = c < 0x80 ? 1 : c < 0xC0 ? 0 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF8 ? 4 : 0;
        bool ok = l > 0 && i + l <= n;
        for (size_t j = 1; ok && j < l; j++)
            ok = (s[i + j] & 0xC0) == 0x80;
        if (!ok) {
            cp[k++] = 0xFFFD;
            i++;
            continue;
        }
        uint32_t v = l == 1 ? c : l == 2 ? c & 0x1Fu : l == 3 ? c & 0x0Fu : c & 0x07u;
        for (size_t j = 1; j < l; j++)
            v = (v << 6) | (s[i + j] & 0x3Fu);
        cp[k++] = v;
        i += l;
    }
    return k;
}

/* The scanners see one piece [a, e): outside it a position has no class
 * and no code point, like the end of the text. */
typedef struct bpe_scan {
    const uint32_t *cp;
    const uint16_t *fl;
    size_t a, e;
    uint32_t *out;
    size_t n_out;
    size_t prev; /* end of the last word */
} bpe_scan;

#define BPE_NO_CP UINT32_MAX

static uint32_t sc_cp(const bpe_scan *s, size_t i) { return i >= s->a && i < s->e ? s->cp[i] : BPE_NO_CP; }
static uint16_t sc_fl(const bpe_scan *s, size_t i) { return i >= s->a && i < s->e ? s->fl[i] : 0; }
static bool sc_letter(const bpe_scan *s, size_t i) { return sc_fl(s, i) & UCLASS_LETTER; }
static bool sc_number(const bpe_scan *s, size_t i) { return sc_fl(s, i) & UCLASS_NUMBER; }
static bool sc_space(const bpe_scan *s, size_t i) { return sc_fl(s, i) & UCLASS_WHITESPACE; }

/* [^\s\p{L}\p{N}]: a code point (of the piece) that is none of these. */
static bool sc_other(const bpe_scan *s, size_t i)
{
    uint16_t f = sc_fl(s, i);
    return f && !(f & (UCLASS_WHITESPACE | UCLASS_LETTER | UCLASS_NUMBER));
}

/* Ends a word at end (nothing when empty); returns its length. */
static size_t sc_word(bpe_scan *s, size_t end)
{
    size_t n = end - s->prev;
    if (n > 0)
        s->out[s->n_out++] = (uint32_t)n;
    s->prev = end;
    return n;
}

static uint32_t sc_lower(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* 's|'t|'re|'ve|'m|'ll|'d at i (case-insensitive when fold): its length or 0. */
static size_t sc_contraction(const bpe_scan *s, size_t i, bool fold)
{
    if (sc_cp(s, i) != '\'' || i + 1 >= s->e)
        return 0;
    uint32_t c1 = sc_cp(s, i + 1), c2 = i + 2 < s->e ? sc_cp(s, i + 2) : BPE_NO_CP;
    if (fold) {
        c1 = sc_lower(c1);
        c2 = sc_lower(c2);
    }
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd')
        return 2;
    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
        return 3;
    return 0;
}

/* \s+(?!\S) then \s+ at i: the end of the word (i when no whitespace). */
static size_t sc_spaces(const bpe_scan *s, size_t i)
{
    size_t k = 0;
    while (sc_space(s, i + k))
        k++;
    if (k > 1 && i + k < s->e)
        return i + k - 1; /* leave the last space to the word after it */
    return i + k;
}

static void scan_gpt2(bpe_scan *s)
{
    for (size_t i = s->a; i < s->e;) {
        size_t c = sc_contraction(s, i, false);
        if (c) {
            i += sc_word(s, i + c);
            continue;
        }
        size_t j = i + (sc_cp(s, i) == ' '); /* " ?" */
        if (sc_letter(s, j) || sc_number(s, j) || sc_other(s, j)) {
            bool (*cls)(const bpe_scan *, size_t) =
                sc_letter(s, j) ? sc_letter : sc_number(s, j) ? sc_number : sc_other;
            while (cls(s, j))
                j++;
            sc_word(s, j);
            i = j;
            continue;
        }
        size_t e = sc_spaces(s, i);
        i = e > i ? e : i + 1; /* a lone code point matching nothing is a word */
        sc_word(s, i);
    }
}

/* Llama 3's expression; Qwen 2's differs only in taking one digit a word. */
static void scan_llama3(bpe_scan *s, size_t max_digits)
{
    for (size_t i = s->a; i < s->e;) {
        uint32_t c = sc_cp(s, i);
        size_t k = sc_contraction(s, i, true);
        if (k) {
            i += sc_word(s, i + k);
            continue;
        }
        /* [^\r\n\p{L}\p{N}]?\p{L}+ */
        if (c != '\r' && c != '\n' && !sc_number(s, i) &&
            (sc_letter(s, i) || sc_letter(s, i + 1))) {
            i++;
            while (sc_letter(s, i))
                i++;
            sc_word(s, i);
            continue;
        }
        /* \p{N}{1,max_digits} */
        if (sc_number(s, i)) {
            size_t start = i;
            while (sc_number(s, i) && i - start < max_digits)
                i++;
            sc_word(s, i);
            continue;
        }
        /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
        size_t j = i + (c == ' ');
        if (sc_other(s, j)) {
            while (sc_other(s, j))
                j++;
            while (sc_cp(s, j) == '\r' || sc_cp(s, j) == '\n')
                j++;
            sc_word(s, j);
            i = j;
            continue;
        }
        /* \s*[\r\n]+ : up to the last CR or LF of the whitespace run */
        size_t last_nl = 0;
        for (size_t t = i; sc_space(s, t); t++)
            if (sc_cp(s, t) == '\r' || sc_cp(s, t) == '\n')
                last_nl = t + 1;
        if (last_nl) {
            i = last_nl;
            sc_word(s, i);
            continue;
        }
        size_t e = sc_spaces(s, i);
        i = e > i ? e : i + 1;
        sc_word(s, i);
    }
}

/* llama.cpp runs the passes below through std::regex (ASCII classes as they
 * are, \s for every White_Space code point): each match is a word, and so is
 * each gap between matches. */

static bool in_ranges(const uint32_t (*r)[2], size_t n, uint32_t c)
{
    for (size_t i = 0; i < n; i++)
        if (c >= r[i][0] && c <= r[i][1])
            return true;
    return false;
}

/* In llama.cpp's std::wregex passes non-ASCII whitespace reads as U+000B. */
static uint32_t sc_wide(const bpe_scan *s, size_t i)
{
    uint32_t c = sc_cp(s, i);
    return c > 0x7F && (sc_fl(s, i) & UCLASS_WHITESPACE) ? 0x0B : c;
}

static bool cls_punct_default(const bpe_scan *s, size_t i)
{
    uint32_t c = sc_cp(s, i);
    return (sc_fl(s, i) & UCLASS_PUNCT) || (c < 0x80 && c && strchr("$+<=>^~|", (int)c));
}

static bool cls_punct_falcon(const bpe_scan *s, size_t i)
{
    return cls_punct_default(s, i) || sc_cp(s, i) == '`';
}

static bool cls_punct(const bpe_scan *s, size_t i) { return sc_fl(s, i) & UCLASS_PUNCT; }

static bool cls_crlf(const bpe_scan *s, size_t i)
{
    return sc_cp(s, i) == '\r' || sc_cp(s, i) == '\n';
}

static bool cls_cjk(const bpe_scan *s, size_t i)
{
    static const uint32_t r[][2] = {{0x4E00, 0x9FA5}, {0x0800, 0x4E00}, {0xAC00, 0xD7FF}};
    return in_ranges(r, sizeof r / sizeof r[0], sc_wide(s, i));
}

/* DeepSeek LLM's cased-letter class, from its tokenizer.json. */
static bool cls_ds_letter(const bpe_scan *s, size_t i)
{
    static const uint32_t r[][2] = {
        {0x41, 0x5A}, {0x61, 0x7A}, {0xB5, 0xB5}, {0xC0, 0xD6}, {0xD8, 0xF6}, {0xF8, 0x1BA},
        {0x1BC, 0x1BF}, {0x1C4, 0x293}, {0x295, 0x2AF}, {0x370, 0x373}, {0x376, 0x377},
        {0x37B, 0x37D}, {0x37F, 0x37F}, {0x386, 0x386}, {0x388, 0x38A}, {0x38C, 0x38C},
        {0x38E, 0x3A1}, {0x3A3, 0x3F5}, {0x3F7, 0x481}, {0x48A, 0x52F}, {0x531, 0x556},
        {0x10A0, 0x10C5}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD}, {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF},
        {0x1D00, 0x1D2B}, {0x1D6B, 0x1D77}, {0x1D79, 0x1D9A}, {0x1E00, 0x1F15}, {0x1F18, 0x1F1D},
        {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B},
        {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC}, {0x1FBE, 0x1FBE},
        {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC},
        {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC}, {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210A, 0x2113},
        {0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126}, {0x2128, 0x2128},
        {0x212A, 0x212D}, {0x212F, 0x2134}, {0x2139, 0x2139}, {0x213C, 0x213F}, {0x2145, 0x2149},
        {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2C7B}, {0x2C7E, 0x2CE4}, {0x2CEB, 0x2CEE},
        {0x2CF2, 0x2CF3}, {0xA640, 0xA66D}, {0xA680, 0xA69B}, {0xA722, 0xA76F}, {0xA771, 0xA787},
        {0xA78B, 0xA78E}, {0xAB70, 0xABBF}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17}, {0xFF21, 0xFF3A},
        {0xFF41, 0xFF5A}, {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
        {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
    };
    return in_ranges(r, sizeof r / sizeof r[0], sc_wide(s, i));
}

static bool cls_ds_punct(const bpe_scan *s, size_t i)
{
    static const uint32_t r[][2] = {{0x21, 0x2F}, {0x3A, 0x7E}, {0xFF01, 0xFF0F},
                                    {0xFF1A, 0xFF5E}, {0x2018, 0x201F}, {0x3000, 0x3002}};
    return in_ranges(r, sizeof r / sizeof r[0], sc_wide(s, i));
}

/* \s in the regex passes: ASCII \t\n\v\f\r and space, or White_Space. */
static bool cls_space(const bpe_scan *s, size_t i) { return sc_space(s, i); }

typedef bool (*bpe_cls)(const bpe_scan *, size_t);

/* Matches of (\s?)CLS{1,max} (max 0: unbounded), leftmost first. */
static void scan_class(bpe_scan *s, bpe_cls cls, bool opt_space, size_t max)
{
    for (size_t i = s->a; i < s->e;) {
        size_t j = i;
        if (opt_space && cls_space(s, i) && cls(s, i + 1))
            j = i + 1;
        else if (!cls(s, i)) {
            i++;
            continue;
        }
        sc_word(s, i); /* the gap before the match */
        size_t start = j;
        while (cls(s, j) && (max == 0 || j - start < max))
            j++;
        sc_word(s, j);
        i = j;
    }
    sc_word(s, s->e);
}

/* [0-9][0-9][0-9]: non-overlapping triples, leftmost first. */
static void scan_digits3(bpe_scan *s)
{
    for (size_t i = s->a; i + 3 <= s->e;) {
        bool d = true;
        for (size_t k = 0; k < 3; k++)
            d = d && sc_cp(s, i + k) >= '0' && sc_cp(s, i + k) <= '9';
        if (!d) {
            i++;
            continue;
        }
        sc_word(s, i);
        sc_word(s, i + 3);
        i += 3;
    }
    sc_word(s, s->e);
}

/* \s+$: the whitespace run that ends the piece. */
static void scan_trail_ws(bpe_scan *s)
{
    size_t i = s->e;
    while (i > s->a && sc_space(s, i - 1))
        i--;
    sc_word(s, i);
    sc_word(s, s->e);
}

static void bpe_pass_run(bpe_pass p, bpe_scan *s)
{
    switch (p) {
    case PASS_GPT2: scan_gpt2(s); break;
    case PASS_LLAMA3: scan_llama3(s, 3); break;
    case PASS_QWEN2: scan_llama3(s, 1); break;
    case PASS_PUNCT_DEFAULT: scan_class(s, cls_punct_default, false, 0); break;
    case PASS_PUNCT_FALCON: scan_class(s, cls_punct_falcon, false, 0); break;
    case PASS_NUMBERS: scan_class(s, sc_number, false, 0); break;
    case PASS_NUMBER: scan_class(s, sc_number, false, 1); break;
    case PASS_DIGITS3: scan_digits3(s); break;
    case PASS_CRLF: scan_class(s, cls_crlf, false, 1); break;
    case PASS_WS_LETTERS: scan_class(s, sc_letter, true, 0); break;
    case PASS_WS_PUNCT: scan_class(s, cls_punct, true, 0); break;
    case PASS_CJK: scan_class(s, cls_cjk, false, 0); break;
    case PASS_DS_LETTERS: scan_class(s, cls_ds_letter, true, 0); break;
    case PASS_DS_PUNCT: scan_class(s, cls_ds_punct, true, 0); break;
    case PASS_TRAIL_WS: scan_trail_ws(s); break;
    }
}

size_t bpe_pre_split(const bpe_pre *p, const uint32_t *cp, const uint16_t *fl, size_t n,
                     uint32_t *piece, uint32_t *scratch)
{
    if (n == 0)
        return 0;
    uint32_t *cur = piece, *next = scratch;
    size_t n_cur = 1;
    cur[0] = (uint32_t)n;
    for (int k = 0; k < p->n_passes; k++) {
        bpe_scan s = {.cp = cp, .fl = fl, .out = next};
        size_t at = 0;
        for (size_t i = 0; i < n_cur; i++) {
            s.a = s.prev = at;
            s.e = at + cur[i];
            bpe_pass_run(p->passes[k], &s);
            at = s.e;
        }
        uint32_t *tmp = cur;
        cur = next;
        next = tmp;
        n_cur = s.n_out;
    }
    if (cur != piece)
        memcpy(piece, cur, n_cur * sizeof *piece);
    return n_cur;
}
