#!/usr/bin/env python3
"""Step 1 of the default model: corpus -> reflowed text, book-level train/validation split, a
SentencePiece tokenizer, and the token streams the trainer reads.

    python3 scripts/train/prepare.py --corpus ../shared/corpus/gutenberg-train.txt.xz --out work/

The corpus is Project Gutenberg books, one after another, each starting at a line "Produced by ...".
Hard line breaks inside paragraphs are joined (a paragraph becomes one line; paragraphs are separated by
one blank line), so the model learns prose rather than 70-column layout. Whole books by authors with
no other book in the corpus, taken from the end, about --val-share of the bytes, are held out (listed
in split.txt), so validation text
is by authors the model never saw. The tokenizer is SentencePiece BPE with byte fallback, no text
normalisation and no whitespace collapsing (what pi's llama SPM tokenizer implements), a dummy prefix
space as Llama's, trained on --spm-sample-mb of the training text.

Writes: train.txt, val.txt, split.txt, tok.model, tok.vocab, train.bin and val.bin (uint16 token ids,
each book after a BOS = 1).
"""
import argparse
import lzma
import os
import random
import re
import sys

import numpy as np


def books(text):
    starts = [m.start() for m in re.finditer(r"(?m)^Produced by", text)]
    if not starts or starts[0] != 0:
        starts = [0] + starts
    return [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]


def reflow(book):
    paras = re.split(r"\n\s*\n", book)
    out = []
    for p in paras:
        p = re.sub(r"\s+", " ", p).strip()
        if len(p) >= 2:
            out.append(p)
    return "\n\n".join(out)


def authors(book):
    """The names on the title page's "by NAME" lines (a title may start with "By" too: all are kept)."""
    return [m.group(1).strip() for m in re.finditer(r"(?im)^\s*by\s+([A-Z][^\n]{2,60})$", book[:6000])]


def author_keys(book):
    """Names reduced to their letters, lower case ("G. A. Henty" and "G.A. HENTY" meet)."""
    return {re.sub(r"[^a-z]", "", a.lower()) for a in authors(book)} - {""}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--val-share", type=float, default=0.015)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--spm-sample-mb", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    import sentencepiece as spm

    os.makedirs(a.out, exist_ok=True)
    opener = lzma.open if a.corpus.endswith(".xz") else open
    with opener(a.corpus, "rt", encoding="utf-8", errors="replace") as f:
        text = f.read()
    bs = books(text)
    total = sum(len(b) for b in bs)
    # Held out: from the end, whole books none of whose title-page names ("by NAME") is on another
    # book of the corpus, until --val-share of the bytes; so validation text is by authors never seen.
    counts = {}
    for b in bs:
        for k in author_keys(b):
            counts[k] = counts.get(k, 0) + 1
    val, size = [], 0
    for i in range(len(bs) - 1, -1, -1):
        if size >= a.val_share * total:
            break
        ks = author_keys(bs[i])
        if ks and all(counts[k] == 1 and k != "various" and "archive" not in k for k in ks):
            val.insert(0, bs.pop(i))
            size += len(val[0])
    with open(os.path.join(a.out, "split.txt"), "w") as f:
        f.write("%d training books, %d held-out books (%.2f%% of the bytes)\n" % (len(bs), len(val), 100.0 * size / total))
        for b in val:
            f.write("held out: %s (%d bytes)\n" % (" / ".join(authors(b)), len(b)))
    paths = {}
    for name, part in (("train", bs), ("val", val)):
        paths[name] = os.path.join(a.out, name + ".txt")
        with open(paths[name], "w", encoding="utf-8") as f:
            f.write("\n\n\f\n\n".join(reflow(b) for b in part))  # \f: document boundary
    print("prepare: %d train books, %d held out (%s)" % (len(bs), len(val), os.path.join(a.out, "split.txt")))

    # The tokenizer, on a random sample of training paragraphs.
    rng = random.Random(a.seed)
    paras = open(paths["train"], encoding="utf-8").read().split("\n\n")
    rng.shuffle(paras)
    sample, n = [], 0
    for p in paras:
        if p == "\f":
            continue
        sample.append(p)
        n += len(p)
        if n > a.spm_sample_mb * 1e6:
            break
    sample_path = os.path.join(a.out, "spm_sample.txt")
    with open(sample_path, "w", encoding="utf-8") as f:
        f.write("\n".join(sample))
    spm.SentencePieceTrainer.train(
        input=sample_path, model_prefix=os.path.join(a.out, "tok"), model_type="bpe", vocab_size=a.vocab,
        byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=True, split_digits=True, allow_whitespace_only_pieces=True,
        max_sentence_length=100000, character_coverage=0.9995, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=os.cpu_count() or 1, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(a.out, "tok.model"))

    for name in ("train", "val"):
        docs = open(paths[name], encoding="utf-8").read().split("\n\n\f\n\n")
        ids = []
        # Each book encoded whole, as pi encodes a prompt (one dummy prefix space, newlines as they
        # are), after BOS.
        for enc in sp.encode(docs, num_threads=os.cpu_count() or 1):
            ids.append(1)
            ids.extend(enc)
        arr = np.array(ids, dtype=np.uint16)
        arr.tofile(os.path.join(a.out, name + ".bin"))
        print("prepare: %s.bin: %d tokens (%.2f bytes per token)" % (name, len(arr), os.path.getsize(paths[name]) / max(1, len(arr))))


if __name__ == "__main__":
    sys.exit(main())
