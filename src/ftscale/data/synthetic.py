"""Embedded synthetic multilingual corpus: English-, German- and French-like text from one semantic generator.

A fresh machine has no internet, so the demo study needs a corpus it can generate: learnable, not trivial, with
a smooth range of difficulty, and with parallel, monolingual and summarisation data drawn from the same world.

Grammar design
--------------
One language-independent generator (``_synth.frames``) draws *semantic frames*: clauses with a verb (intransitive,
transitive, ditransitive or clause-taking "say/know/think"), tense (present/past), polarity, a subject, objects,
a prepositional phrase (with/for/without/in), sentence adverbs, adverbial subordinate clauses
(because/while/although) and "that" complements; noun phrases carry number, a determiner (definite, indefinite,
numeral 2-9, or a pronoun), an adjective and optionally a relative clause (subject or object gap). Nesting of
relative/subordinate clauses is bounded by ``max_clause_depth``. Selection restrictions keep it sensible
(people say things, things get read, places get visited) and Zipf-distributed lemma choice gives a long tail
of rare words, so more data keeps helping.

Three renderers (``_synth.render``) turn a frame into a sentence with real structural differences:
German V2 / verb-final order, separable verbs ("ruft ... an" vs "... anruft"), perfect with haben/sein,
gender x case agreement of articles and adjective endings, "kein", "im"; French post-nominal agreeing
adjectives, elision, ne ... pas, "pas de", passé composé with être agreement, au/aux; English do-support.
The lexicon (``_synth.lexicon``) has a core of real words and grows to ``n_lemmas`` with deterministic
pseudo-words whose spelling, gender and plural class follow per-language patterns.

Documents follow a protagonist: the first sentence introduces it ("A tired dog ..."), later sentences refer to
it by pronoun or definite noun phrase between unrelated events, and one sentence is marked as the main event
("Most importantly, ..."/"Vor allem ..."). Its summary states the number of events and restates the main event
with the protagonist named in full and adjuncts dropped, as a "that"-clause (verb-final in German).

Splits are by hash of each sentence's frame (ints only, so the hash is stable across processes): a frame
belongs to exactly one of train/dev/test, for pairs, documents and summaries alike.

Speed: pure Python, about one million whitespace tokens per CPU second (noun phrases are
rendered once and cached, samplers are lookup tables); document streams are seeded per chunk of documents,
so ``pretraining_text(..., workers=N)`` spreads generation over N processes with byte-identical output.
``bench/synthetic_speed.py`` measures it against in-run baselines.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from itertools import count, islice
from multiprocessing import get_context

from ftscale.errors import DataError, UserError

from ._synth.frames import NUMERALS, FrameGenerator, summary_clause
from ._synth.lexicon import Lexicon, build_lexicon
from ._synth.render import RENDERERS

LANGUAGES = ("en", "de", "fr")
SPLITS = ("train", "dev", "test")
# Which language incidental parallel text in a monolingual document is translated into.
PARALLEL_PARTNER = {"en": "de", "de": "en", "fr": "de"}
_HASH_BUCKETS = 10_000
DOCS_PER_CHUNK = 64
_UNBOUNDED = 10**15


class SyntheticConfigError(UserError, ValueError):
    """An invalid synthetic-corpus setting."""


class SyntheticRequestError(DataError, ValueError):
    """A request the synthetic corpus cannot satisfy (unknown language or split, too many items)."""


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the synthetic corpus; the same config always generates the same text.

    ``n_lemmas``: content words per language (half nouns, a quarter verbs, a quarter adjectives).
    ``max_clause_depth``: how deep relative / subordinate clauses may nest (0: simple clauses only).
    ``noise``: per-word rate of typos and dropped words on the source side of pairs and in documents.
    ``parallel_share``: share of document sentences followed by their translation (incidental parallel text).
    ``doc_sentences``: inclusive range of sentences (events) per document.
    """

    seed: int = 0
    n_lemmas: int = 600
    max_clause_depth: int = 2
    noise: float = 0.0
    parallel_share: float = 0.02
    doc_sentences: tuple[int, int] = (3, 8)
    dev_share: float = 0.05
    test_share: float = 0.05
    max_sentence_tokens: int = 26
    min_sentence_tokens: int = 4

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> SyntheticConfigError:
            return SyntheticConfigError(f"SyntheticConfig.{field}: {why}")

        # Values from a study file may be strings; say so instead of failing in a comparison below.
        for field in ("n_lemmas", "max_clause_depth", "max_sentence_tokens", "min_sentence_tokens"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad(field, f"{value!r} must be an integer")
        for field in ("noise", "parallel_share", "dev_share", "test_share"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad(field, f"{value!r} must be a number")
        if not 40 <= self.n_lemmas <= 200_000:
            raise bad(
                "n_lemmas", f"{self.n_lemmas} is outside 40..200000; use a few hundred to a few thousand"
            )
        if not 0 <= self.max_clause_depth <= 6:
            raise bad("max_clause_depth", f"{self.max_clause_depth} is outside 0..6")
        if not 0.0 <= self.noise < 1.0:
            raise bad("noise", f"{self.noise} must be in [0, 1); 0.02-0.1 is a realistic typo rate")
        if not 0.0 <= self.parallel_share <= 1.0:
            raise bad("parallel_share", f"{self.parallel_share} must be in [0, 1]")
        lo_hi = tuple(self.doc_sentences) if isinstance(self.doc_sentences, list | tuple) else ()
        numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in lo_hi)
        if len(lo_hi) != 2 or not numbers or not 1 <= lo_hi[0] <= lo_hi[1] <= 50:
            raise bad("doc_sentences", f"{self.doc_sentences} must be (min, max) with 1 <= min <= max <= 50")
        object.__setattr__(self, "doc_sentences", (int(lo_hi[0]), int(lo_hi[1])))
        if self.dev_share <= 0 or self.test_share <= 0 or self.dev_share + self.test_share >= 0.5:
            raise bad("dev_share/test_share", "each must be > 0 and together < 0.5")
        if self.max_sentence_tokens < 12:
            raise bad("max_sentence_tokens", f"{self.max_sentence_tokens} is too short; use >= 12")
        if not 1 <= self.min_sentence_tokens <= 8:
            raise bad("min_sentence_tokens", f"{self.min_sentence_tokens} must be in 1..8")


class SyntheticCorpus:
    """Generator of parallel pairs, monolingual documents, pretraining text and summaries (see module doc)."""

    def __init__(self, config: SyntheticConfig | None = None):
        self.config = config or SyntheticConfig()
        cfg = self.config
        self._lexicon: Lexicon = build_lexicon(cfg.seed, cfg.n_lemmas)
        self._frames = FrameGenerator(self._lexicon, cfg.max_clause_depth)
        self._render = {lang: RENDERERS[lang](self._lexicon) for lang in LANGUAGES}
        dev_cut = round(_HASH_BUCKETS * (1 - cfg.dev_share - cfg.test_share))
        test_cut = round(_HASH_BUCKETS * (1 - cfg.test_share))
        self._split_cuts = (0, dev_cut, test_cut, _HASH_BUCKETS)
        self._split_shares = (dev_cut / _HASH_BUCKETS, cfg.dev_share, cfg.test_share)

    # ---- public API ----------------------------------------------------------------------------------------

    def lexicon(self, lang: str) -> dict[str, dict]:
        """Lemma inventory of one language: lemma -> {"pos", "concept", ...}."""
        self._check_lang(lang)
        return self._lexicon.lemmas(lang)

    def sentence_pairs(self, src: str, tgt: str, n: int, split: str = "train") -> list[tuple[str, str]]:
        """``n`` distinct parallel sentences ``(source, target)``; noise applies to the source only.

        The frame stream does not depend on the language pair, so e.g. the en→de and fr→de test sets of the
        same size hold the same German targets (multi-way parallel, handy for zero-shot comparisons).
        """
        self._check_lang(src)
        self._check_lang(tgt)
        if src == tgt:
            raise SyntheticRequestError(f"sentence_pairs: src and tgt are both {src!r}; choose two languages")
        split_id = self._check_split(split)
        self._check_n(n, "sentence_pairs", split_id)
        r = self._rng("pairs", split).random
        noise_r = self._rng("pairs-noise", split, src).random
        english, source, target = self._render["en"], self._render[src], self._render[tgt]
        max_tokens, min_tokens = self.config.max_sentence_tokens, self.config.min_sentence_tokens
        noise = self.config.noise
        seen: set[tuple] = set()
        pairs: list[tuple[str, str]] = []
        attempts, patience = 0, 200 * n + 20_000
        while len(pairs) < n:
            attempts += 1
            if attempts > patience:
                raise self._exhausted("sentence_pairs", n, split, len(pairs))
            frame = self._frames.clause(r)
            if self._split_index(frame) != split_id or frame in seen:
                continue
            seen.add(frame)
            # Length is judged on English so the accepted frames do not depend on the language pair.
            en_text = english.sentence(frame)
            if not min_tokens <= en_text.count(" ") + 1 <= max_tokens:
                continue
            src_text = en_text if src == "en" else source.sentence(frame)
            tgt_text = en_text if tgt == "en" else target.sentence(frame)
            if noise:
                src_text = _add_noise(src_text, noise_r, noise)
            pairs.append((src_text, tgt_text))
        return pairs

    def documents(self, lang: str, n: int, split: str = "train") -> list[str]:
        """``n`` monolingual documents; a ``parallel_share`` of sentences is followed by its translation."""
        self._check_lang(lang)
        split_id = self._check_split(split)
        self._check_n(n, "documents", split_id)
        return list(islice(self._document_stream(lang, split), n))

    def pretraining_text(
        self,
        langs: Sequence[str] = ("en", "de"),
        n_tokens: int = 1_000_000,
        split: str = "train",
        weights: Sequence[float] | None = None,
        workers: int = 1,
    ) -> Iterator[str]:
        """Documents until about ``n_tokens`` whitespace tokens, languages mixed by token share (even by default).

        Each language's documents are the same as ``documents(lang, ...)`` returns, in order. ``workers > 1``
        generates in that many processes; the output is identical to ``workers=1``.
        """
        langs = tuple(langs)
        if not langs:
            raise SyntheticRequestError("pretraining_text: langs is empty; pass e.g. ('en', 'de')")
        for lang in langs:
            self._check_lang(lang)
        self._check_split(split)
        if weights is None:
            weights = [1.0] * len(langs)
        if len(weights) != len(langs) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise SyntheticRequestError(
                f"pretraining_text: weights {list(weights)} must be {len(langs)} non-negative numbers, not all 0"
            )
        if n_tokens < 0:
            raise SyntheticRequestError(f"pretraining_text: n_tokens={n_tokens} must be >= 0")
        if not isinstance(workers, int) or workers < 1:
            raise SyntheticRequestError(f"pretraining_text: workers={workers!r} must be a positive integer")
        return self._mix(langs, [float(w) for w in weights], n_tokens, split, workers)

    def summary_pairs(self, lang: str, n: int, split: str = "train") -> list[tuple[str, str]]:
        """``n`` pairs ``(document, summary)`` in one language; noise applies to the document only."""
        self._check_lang(lang)
        split_id = self._check_split(split)
        self._check_n(n, "summary_pairs", split_id)
        r = self._rng("summaries", lang, split).random
        noise_r = self._rng("summaries-noise", lang, split).random
        renderer = self._render[lang]
        noise = self.config.noise
        pairs = []
        for _ in range(n):
            sentences, frames, protagonist, main_index = self._document(r, lang, split_id)
            document = " ".join(sentences)
            if noise:
                document = _add_noise(document, noise_r, noise)
            summary = renderer.summary(len(frames), summary_clause(frames[main_index], protagonist))
            pairs.append((document, summary))
        return pairs

    # ---- internals -----------------------------------------------------------------------------------------

    def _rng(self, *parts: str) -> random.Random:
        # String seeds go through SHA-512 in random.Random, so streams are stable across processes.
        return random.Random("|".join(("ftscale-synthetic", str(self.config.seed), *parts)))

    def _split_index(self, frame: tuple) -> int:
        bucket = hash(frame) % _HASH_BUCKETS
        _, dev_cut, test_cut, _ = self._split_cuts
        return 0 if bucket < dev_cut else 1 if bucket < test_cut else 2

    def _document(self, r, lang: str, split_id: int) -> tuple[list[str], list[tuple], tuple, int]:
        """One document's sentences in ``lang``, their frames, the protagonist and the main-event index."""
        lo, hi = self.config.doc_sentences
        n_sentences = lo + int(r() * (hi - lo + 1))
        protagonist = self._frames.protagonist(r)
        main_index = 0 if n_sentences == 1 else 1 + int(r() * (n_sentences - 1))
        renderer = self._render[lang]
        max_tokens, min_tokens = self.config.max_sentence_tokens, self.config.min_sentence_tokens
        draw = self._frames.document_sentence
        sentences, frames = [], []
        for index in range(n_sentences):
            for _ in range(100_000):
                frame = draw(r, protagonist, index, main_index)
                if self._split_index(frame) != split_id:
                    continue
                text = renderer.sentence(frame)
                if min_tokens <= text.count(" ") + 1 <= max_tokens:
                    break
            else:  # pragma: no cover - only reachable with absurd split shares
                raise SyntheticRequestError(f"documents: cannot draw a {SPLITS[split_id]} sentence")
            sentences.append(text)
            frames.append(frame)
        return sentences, frames, protagonist, main_index

    def _document_chunk(self, lang: str, split: str, chunk: int) -> list[str]:
        """Documents ``chunk * DOCS_PER_CHUNK ...`` of a language's stream; each chunk has its own seed.

        Independent chunks make the stream identical whether it is generated by one process or by many.
        """
        split_id = SPLITS.index(split)
        r = self._rng("documents", lang, split, str(chunk)).random
        extra_r = self._rng("documents-parallel", lang, split, str(chunk)).random
        partner = self._render[PARALLEL_PARTNER[lang]]
        share, noise = self.config.parallel_share, self.config.noise
        documents = []
        for _ in range(DOCS_PER_CHUNK):
            sentences, frames, _, _ = self._document(r, lang, split_id)
            if share:
                mixed = []
                for text, frame in zip(sentences, frames, strict=True):
                    mixed.append(text)
                    if extra_r() < share:
                        mixed.append(partner.sentence(frame))
                sentences = mixed
            document = " ".join(sentences)
            if noise:
                document = _add_noise(document, extra_r, noise)
            documents.append(document)
        return documents

    def _document_stream(self, lang: str, split: str, pool: Executor | None = None) -> Iterator[str]:
        if pool is None:
            for chunk in count():
                yield from self._document_chunk(lang, split, chunk)
        # Keep a few chunks in flight per language; results are consumed strictly in chunk order.
        ahead = 2 * getattr(pool, "_max_workers", 2)
        pending = deque(pool.submit(_worker_chunk, lang, split, k) for k in range(ahead))
        next_chunk = ahead
        while True:
            documents = pending.popleft().result()
            pending.append(pool.submit(_worker_chunk, lang, split, next_chunk))
            next_chunk += 1
            yield from documents

    def _mix(
        self, langs: tuple[str, ...], weights: list[float], n_tokens: int, split: str, workers: int
    ) -> Iterator[str]:
        pool = None
        if workers > 1:
            pool = ProcessPoolExecutor(
                workers, mp_context=get_context("spawn"), initializer=_worker_init, initargs=(self.config,)
            )
        try:
            streams = [self._document_stream(lang, split, pool) for lang in langs]
            produced = [0] * len(langs)
            active = [i for i, w in enumerate(weights) if w > 0]
            total = 0
            while total < n_tokens:
                # Deficit scheduling: the language furthest below its share goes next (deterministic, exact).
                i = min(active, key=lambda j: produced[j] / weights[j])
                document = next(streams[i])
                n_words = document.count(" ") + 1
                produced[i] += n_words
                total += n_words
                yield document
        finally:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    def _check_lang(self, lang: str) -> None:
        if lang not in LANGUAGES:
            raise SyntheticRequestError(f"unknown language {lang!r}; the synthetic corpus has {LANGUAGES}")

    def _check_split(self, split: str) -> int:
        if split not in SPLITS:
            raise SyntheticRequestError(f"unknown split {split!r}; use one of {SPLITS}")
        return SPLITS.index(split)

    def _check_n(self, n: int, what: str, split_id: int) -> None:
        if not isinstance(n, int) or n < 0:
            raise SyntheticRequestError(f"{what}: n={n!r} must be a non-negative integer")
        capacity = self._capacity(split_id)
        if n > capacity:
            raise SyntheticRequestError(
                f"{what}: n={n} exceeds the about {capacity} distinct items this config can make for split "
                f"{SPLITS[split_id]!r}; increase n_lemmas or max_clause_depth, or ask for fewer"
            )

    def _capacity(self, split_id: int) -> int:
        """An upper bound on distinct sentence frames (depth 0 counted exactly-ish; deeper is unbounded)."""
        if self.config.max_clause_depth > 0:
            return _UNBOUNDED
        lex = self._lexicon
        n_nouns, n_verbs, n_adjs = len(lex.nouns), len(lex.verbs), len(lex.adjectives)
        noun_phrases = n_nouns * (2 + 2 + len(NUMERALS)) * (n_adjs + 1)
        subjects = noun_phrases + 2
        clauses = n_verbs * 2 * 2 * subjects * (1 + noun_phrases) ** 2 * (1 + 4 * noun_phrases) * 6
        # Documents and summaries are sequences of such sentences, so the sentence count bounds them too.
        return min(int(clauses * self._split_shares[split_id]), _UNBOUNDED)

    def _exhausted(self, what: str, n: int, split: str, found: int) -> SyntheticRequestError:
        return SyntheticRequestError(
            f"{what}: found only {found} of n={n} distinct items for split {split!r}; "
            "increase n_lemmas or max_clause_depth, or ask for fewer"
        )


def _add_noise(text: str, r, rate: float) -> str:
    """Per-word typos (swap, delete or double a letter) and dropped words; the last word is never dropped."""
    words = text.split(" ")
    last = len(words) - 1
    out = []
    for i, word in enumerate(words):
        if r() >= rate:
            out.append(word)
            continue
        op = r()
        if op < 0.25 and i != last:
            continue
        if len(word) < 3:
            out.append(word)
            continue
        k = int(r() * (len(word) - 2))  # never touch the final character (keeps punctuation intact)
        if op < 0.5:
            word = word[:k] + word[k + 1] + word[k] + word[k + 2 :]
        elif op < 0.75:
            word = word[:k] + word[k + 1 :]
        else:
            word = word[:k] + word[k] + word[k:]
        out.append(word)
    return " ".join(out)


# ---- worker processes for pretraining_text(workers > 1) ------------------------------------------------------

_WORKER_CORPUS: SyntheticCorpus | None = None


def _worker_init(config: SyntheticConfig) -> None:
    global _WORKER_CORPUS
    _WORKER_CORPUS = SyntheticCorpus(config)


def _worker_chunk(lang: str, split: str, chunk: int) -> list[str]:
    assert _WORKER_CORPUS is not None, "worker used before its initializer ran"
    return _WORKER_CORPUS._document_chunk(lang, split, chunk)
