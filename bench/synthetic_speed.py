"""Benchmark of the synthetic corpus: generation speed, and how far a word-by-word translation baseline gets.

Speed is reported in whitespace tokens per second, both per wall-clock second and per CPU second of this
process (``time.process_time``: on a machine shared with other jobs the wall clock also counts the time the
process waited for a core, the CPU clock does not), and as a ratio against two baselines measured in the same
run (timings on a shared machine are noisy): a unigram sampler (``random.choices`` over the same vocabulary,
C-speed, the fastest conceivable "text" generator) and 1M ``random()`` calls in a Python loop, which also gives
the machine's slowdown against an unloaded reference core (about 0.05 s).

The baseline check learns a word-to-word dictionary from training pairs (Dice co-occurrence, the classic
unigram alignment heuristic), translates test sources monotonically word by word, and scores it with sacrebleu.
A clearly imperfect score shows the task needs reordering and agreement, not just a lexicon.

    PYTHONPATH=src python bench/synthetic_speed.py [--tokens 1000000] [--pairs 20000] [--speed-only]
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter, defaultdict

import sacrebleu

from ftscale.data.synthetic import SyntheticConfig, SyntheticCorpus

REFERENCE_RANDOM_LOOP_S = 0.05  # 1M random() calls in a Python loop on an unloaded modern core


def random_loop_seconds() -> float:
    r = random.Random(0).random
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(1_000_000):
            r()
        best = min(best, time.perf_counter() - start)
    return best


def _timed(work) -> tuple[float, float]:
    """(tokens per wall-clock second, tokens per CPU second) of ``work()``, which returns its token count."""
    wall, cpu = time.perf_counter(), time.process_time()
    tokens = work()
    return tokens / (time.perf_counter() - wall), tokens / (time.process_time() - cpu)


def generation_speed(n_tokens: int, seed: int = 0) -> tuple[float, float]:
    corpus = SyntheticCorpus(SyntheticConfig(seed=seed))  # fresh, so caches start cold as for a user
    return _timed(lambda: sum(d.count(" ") + 1 for d in corpus.pretraining_text(("en", "de"), n_tokens)))


def pair_speed(n_pairs: int, seed: int = 0) -> tuple[float, float]:
    corpus = SyntheticCorpus(SyntheticConfig(seed=seed))

    def work() -> int:
        return sum(s.count(" ") + t.count(" ") + 2 for s, t in corpus.sentence_pairs("en", "de", n_pairs))

    return _timed(work)


def unigram_speed(vocabulary: list[str], n_tokens: int) -> tuple[float, float]:
    rng = random.Random(0)

    def work() -> int:
        produced = 0
        while produced < n_tokens:
            text = " ".join(rng.choices(vocabulary, k=1000))
            produced += text.count(" ") + 1
        return produced

    return _timed(work)


def best_of(repeats: int, measure) -> tuple[float, float]:
    """Best wall and best CPU throughput over ``repeats`` runs (the least disturbed by other jobs)."""
    runs = [measure() for _ in range(repeats)]
    return max(w for w, _ in runs), max(c for _, c in runs)


def _tokens(text: str) -> list[str]:
    return [w.strip(".,:").lower() for w in text.split()]


def dice_dictionary(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Each source word -> the target word it co-occurs with most (Dice coefficient over sentence pairs)."""
    source_count: Counter[str] = Counter()
    target_count: Counter[str] = Counter()
    joint: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for source, target in pairs:
        source_words, target_words = set(_tokens(source)), set(_tokens(target))
        source_count.update(source_words)
        target_count.update(target_words)
        for s in source_words:
            joint[s].update(target_words)
    return {
        s: max(cooc, key=lambda t: 2 * cooc[t] / (source_count[s] + target_count[t]))
        for s, cooc in joint.items()
    }


def word_by_word_scores(corpus: SyntheticCorpus, src: str, tgt: str, n_train: int, n_test: int) -> dict:
    dictionary = dice_dictionary(corpus.sentence_pairs(src, tgt, n_train))
    test = corpus.sentence_pairs(src, tgt, n_test, "test")
    hypotheses = [" ".join(dictionary.get(w, w) for w in _tokens(s)) for s, _ in test]
    references = [" ".join(_tokens(t)) for _, t in test]
    copy = [" ".join(_tokens(s)) for s, _ in test]
    return {
        "word_by_word_bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
        "word_by_word_chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score,
        "copy_source_bleu": sacrebleu.corpus_bleu(copy, [references]).score,
        "bag_word_precision": _bag_overlap(hypotheses, references),
    }


def _bag_overlap(hypotheses: list[str], references: list[str]) -> float:
    """Share of hypothesis words that occur in the reference: high = lexicon right, low BLEU = order/morphology."""
    hit = total = 0
    for hypothesis, reference in zip(hypotheses, references, strict=True):
        ref = Counter(reference.split())
        hyp = Counter(hypothesis.split())
        hit += sum((hyp & ref).values())
        total += sum(hyp.values())
    return 100.0 * hit / max(total, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--test-pairs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="speed runs per measurement; the best counts")
    parser.add_argument("--speed-only", action="store_true", help="skip the word-by-word baseline")
    args = parser.parse_args()

    vocabulary = [w for d in SyntheticCorpus(SyntheticConfig(seed=0)).documents("en", 200) for w in d.split()]
    loop_s = random_loop_seconds()
    speed = best_of(args.repeats, lambda: generation_speed(args.tokens))
    pairs_speed = best_of(args.repeats, lambda: pair_speed(args.pairs))
    unigram = best_of(args.repeats, lambda: unigram_speed(vocabulary, args.tokens))
    slowdown = max(1.0, loop_s / REFERENCE_RANDOM_LOOP_S)
    print(
        f"machine: 1M random() calls in {loop_s:.3f} s -> slowdown {slowdown:.1f}x vs an unloaded reference core"
    )
    for name, (wall, cpu) in (("pretraining_text", speed), ("sentence_pairs", pairs_speed)):
        print(
            f"{name + ':':18s}{wall:>11,.0f} tokens/wall-s  {cpu:>11,.0f} tokens/CPU-s  "
            f"(CPU x{slowdown:.1f} slowdown -> ~{cpu * slowdown:,.0f} unloaded)  "
            f"ratio to unigram baseline: wall {wall / unigram[0]:.3f}, CPU {cpu / unigram[1]:.3f}"
        )
    print(
        f"unigram sampler baseline (random.choices, C speed): {unigram[0]:,.0f} tokens/wall-s, "
        f"{unigram[1]:,.0f} tokens/CPU-s"
    )
    if args.speed_only:
        return

    print("\nword-by-word dictionary baseline (Dice dictionary from train pairs, monotone, test split):")
    for depth in (0, 2):
        for n_lemmas in (600, 3000):
            corpus = SyntheticCorpus(SyntheticConfig(seed=0, n_lemmas=n_lemmas, max_clause_depth=depth))
            for src, tgt in (("en", "de"), ("de", "en"), ("fr", "de")):
                scores = word_by_word_scores(corpus, src, tgt, args.pairs, args.test_pairs)
                print(
                    f"  depth={depth} n_lemmas={n_lemmas:5d} {src}->{tgt}: "
                    + "  ".join(f"{k}={v:.1f}" for k, v in scores.items())
                )


if __name__ == "__main__":
    main()
