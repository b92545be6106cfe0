"""Tests of the embedded synthetic corpus: determinism, splits, grammar properties, knobs and speed."""

from __future__ import annotations

import itertools
import random
import re
import time

import pytest

from ftscale.data.synthetic import LANGUAGES, SyntheticConfig, SyntheticCorpus
from ftscale.errors import UserError

SUBORDINATORS_DE = ("dass", "weil", "obwohl", "während")


@pytest.fixture(scope="module")
def corpus() -> SyntheticCorpus:
    return SyntheticCorpus(SyntheticConfig(seed=0, n_lemmas=600))


@pytest.fixture(scope="module")
def shallow() -> SyntheticCorpus:
    """Depth 1: a subordinate clause holds no further clause, so it runs to the next comma or full stop."""
    return SyntheticCorpus(SyntheticConfig(seed=1, n_lemmas=600, max_clause_depth=1))


def _words(text: str) -> list[str]:
    return [w.strip(".,") for w in text.split()]


def _german_finite_forms(corpus: SyntheticCorpus) -> set[str]:
    forms = {"habe", "hat", "haben", "bin", "ist", "sind"}
    for verb in corpus._lexicon.verbs:
        present, particle, *_ = verb.de
        forms.update(particle + form for form in present)
    return forms


def test_languages_constant():
    assert LANGUAGES == ("en", "de", "fr")


def test_same_seed_same_output_and_other_seed_differs():
    a = SyntheticCorpus(SyntheticConfig(seed=3, noise=0.05))
    b = SyntheticCorpus(SyntheticConfig(seed=3, noise=0.05))
    c = SyntheticCorpus(SyntheticConfig(seed=4, noise=0.05))
    assert a.sentence_pairs("en", "de", 50) == b.sentence_pairs("en", "de", 50)
    assert a.documents("de", 5, "dev") == b.documents("de", 5, "dev")
    assert a.summary_pairs("en", 5) == b.summary_pairs("en", 5)
    assert list(a.pretraining_text(("en", "de"), 2000)) == list(b.pretraining_text(("en", "de"), 2000))
    assert a.sentence_pairs("en", "de", 50) != c.sentence_pairs("en", "de", 50)
    assert a.lexicon("de") != c.lexicon("de")


def test_sentences_are_plain_punctuated_and_of_typical_length(corpus):
    pairs = corpus.sentence_pairs("en", "de", 500) + corpus.sentence_pairs("fr", "de", 200)
    lengths = []
    for source, target in pairs:
        for text in (source, target):
            assert text[-1] in ".!?" and text[0].isupper(), text
            assert "  " not in text
            lengths.append(len(text.split()))
    lengths.sort()
    assert 8 <= lengths[len(lengths) // 2] <= 20
    assert lengths[-1] <= 36
    assert any("ä" in t or "ö" in t or "ü" in t for _, t in pairs)


def test_splits_are_disjoint(corpus):
    splits = {
        s: corpus.sentence_pairs("en", "de", n, s) for s, n in (("train", 4000), ("dev", 400), ("test", 400))
    }
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        assert not set(splits[a]) & set(splits[b])
        assert not {t for _, t in splits[a]} & {t for _, t in splits[b]}
    summaries = {s: corpus.summary_pairs("de", 60, s) for s in ("train", "test")}
    train_sentences = {x for d, _ in summaries["train"] for x in d.split(". ")}
    test_sentences = {x for d, _ in summaries["test"] for x in d.split(". ")}
    assert not train_sentences & test_sentences


def test_pairs_are_distinct_and_multiway_parallel_across_sources(corpus):
    en_de = corpus.sentence_pairs("en", "de", 300, "test")
    fr_de = corpus.sentence_pairs("fr", "de", 300, "test")
    de_en = corpus.sentence_pairs("de", "en", 300, "test")
    assert len(set(en_de)) == 300
    assert [t for _, t in en_de] == [t for _, t in fr_de]
    assert [(t, s) for s, t in en_de] == de_en


def test_german_subordinate_clauses_are_verb_final(shallow):
    finite = _german_finite_forms(shallow)
    checked = 0
    for _, german in shallow.sentence_pairs("en", "de", 1500):
        for conj in SUBORDINATORS_DE:
            for match in re.finditer(rf", {conj} ([^,.]+)[,.]", german):
                words = match.group(1).split()
                assert words[-1] in finite, german
                assert words[0] not in finite, german  # the verb does not come right after the conjunction
                checked += 1
    assert checked > 200


def test_german_articles_agree_with_gender_and_case(corpus):
    lexicon = corpus.lexicon("de")
    allowed = {  # singular article forms by gender, over nominative / accusative / dative
        "m": {"der", "den", "dem", "ein", "einen", "einem", "kein", "keinen", "keinem", "im"},
        "f": {"die", "der", "eine", "einer", "keine", "keiner"},
        "n": {"das", "dem", "ein", "einem", "kein", "keinem", "im"},
    }
    articles = set().union(*allowed.values())
    adjective_endings = {"e", "en", "er", "es"}
    checked = 0
    for _, german in corpus.sentence_pairs("en", "de", 2000):
        words = _words(german)
        for i, word in enumerate(words):
            entry = lexicon.get(word)
            if not entry or entry["pos"] != "noun" or entry["plural"] == word:
                continue  # plural-identical nouns (der Lehrer / die Lehrer) are ambiguous
            before = words[i - 1].lower()
            if before not in articles and i >= 2 and words[i - 2].lower() in articles:
                adjective = words[i - 1]
                assert any(adjective.endswith(e) for e in adjective_endings), german
                before = words[i - 2].lower()
            if before in articles:
                assert before in allowed[entry["gender"]], (word, before, german)
                checked += 1
    assert checked > 1000
    # Main-clause subjects without an adverb in front are nominative.
    for _, german in corpus.sentence_pairs("fr", "de", 300):
        first = german.split()[0].lower()
        assert first not in {"den", "dem", "einen", "einem", "einer"}, german


def test_german_separable_particles(shallow):
    # "anrufen" (to call): "ruft ... an" in main clauses, fused "anruft" only in subordinate / relative clauses.
    main_forms = {"rufe", "ruft", "rufen"}
    main_seen = fused_seen = 0
    for english, german in shallow.sentence_pairs("en", "de", 3000):
        if "call" not in english:
            continue
        for clause in re.split(r", ", german.rstrip(".")):
            words = clause.split()
            for i, word in enumerate(words):
                if word in main_forms:  # the particle closes the main clause, after any relative clause
                    assert "an" in _words(german)[_words(german).index(word) + 1 :], german
                    main_seen += 1
                if word in {"anrufe", "anruft", "anrufen"}:
                    assert words[0] in (*SUBORDINATORS_DE, "der", "die", "das", "den"), german
                    assert i == len(words) - 1, german
                    fused_seen += 1
    assert main_seen > 10 and fused_seen > 10


def test_french_adjectives_follow_the_noun(corpus):
    lexicon = corpus._lexicon
    adjective_forms = {form for adj in lexicon.adjectives[:16] for form in adj.fr}  # the real core adjectives
    noun_forms = {form for noun in lexicon.nouns for form in (noun.fr[0], noun.fr[2])}
    checked = 0
    for french, _ in corpus.sentence_pairs("fr", "de", 1500):
        words = [w.split("'")[-1] for w in _words(french)]
        for i, word in enumerate(words):
            if word in adjective_forms:
                assert i > 0 and words[i - 1] in noun_forms, french
                checked += 1
    assert checked > 100
    assert "ne" in {w for f, _ in corpus.sentence_pairs("fr", "de", 300) for w in f.split()}


@pytest.mark.parametrize("share", [0.0, 0.25])
def test_parallel_share_in_documents(share):
    corpus = SyntheticCorpus(SyntheticConfig(seed=2, parallel_share=share))
    lexicon = corpus._lexicon
    english_words = {w for n in lexicon.nouns for w in n.en} | {a.en for a in lexicon.adjectives}
    english_words |= {w for v in lexicon.verbs for w in (*v.en[0], v.en[1])}
    german_words = set(corpus.lexicon("de")) - english_words
    german_words |= {"der", "die", "das", "den", "dem", "nicht", "ist", "hat"}
    english = german = 0
    for document in corpus.documents("en", 150):
        for sentence in document.split(". "):
            words = _words(sentence)
            is_german = any(
                w in german_words or (i > 0 and w[0].isupper() and w != "I") for i, w in enumerate(words)
            )
            german += is_german
            english += not is_german
    assert german / english == pytest.approx(share, abs=0.04)


def _is_german(document: str) -> bool:
    """German documents capitalise nouns mid-sentence; English ones only "I"."""
    words = document.split()
    capitalised = [
        w for prev, w in itertools.pairwise(words) if w[0].isupper() and w != "I" and prev[-1] != "."
    ]
    return len(capitalised) >= 2


def test_pretraining_text_mixes_languages_and_stops_near_budget():
    corpus = SyntheticCorpus(SyntheticConfig(seed=0, parallel_share=0.0))
    documents = list(corpus.pretraining_text(("en", "de"), 20_000))
    total = sum(len(d.split()) for d in documents)
    assert 20_000 <= total < 20_000 + 300
    german = sum(len(d.split()) for d in documents if _is_german(d))
    assert 0.45 < german / total < 0.55
    # Weights set the token share, and each language's documents are exactly its documents() stream.
    weighted = list(corpus.pretraining_text(("en", "de"), 20_000, weights=(3, 1)))
    english = [d for d in weighted if not _is_german(d)]
    assert sum(len(d.split()) for d in english) / sum(len(d.split()) for d in weighted) == pytest.approx(
        0.75, abs=0.03
    )
    assert english == corpus.documents("en", len(english))


def test_parallel_workers_give_identical_text():
    corpus = SyntheticCorpus(SyntheticConfig(seed=9))
    single = list(corpus.pretraining_text(("de", "fr"), 12_000))
    assert list(corpus.pretraining_text(("de", "fr"), 12_000, workers=2)) == single


def test_summary_states_count_and_main_subject(corpus):
    english_nouns = {n.en[0]: n for n in corpus._lexicon.nouns} | {n.en[1]: n for n in corpus._lexicon.nouns}
    german_nouns = {n.de[0]: n for n in corpus._lexicon.nouns} | {n.de[2]: n for n in corpus._lexicon.nouns}
    for lang, nouns, marker in (
        ("en", english_nouns, "Most importantly,"),
        ("de", german_nouns, "Vor allem"),
    ):
        pairs = corpus.summary_pairs(lang, 150)
        counts = []
        for document, summary in pairs:
            n_sentences = len(re.findall(r"\.( |$)", document))
            counts.append(n_sentences)
            assert summary.startswith(f"{n_sentences} "), (document, summary)
            assert document.count(marker) == 1 or (n_sentences == 1)
            first_sentence = _words(document.split(". ")[0])
            first_sentence[0] = first_sentence[0] if lang == "de" else first_sentence[0].lower()
            protagonist = next(w for w in first_sentence if w in nouns)
            assert protagonist in _words(summary), (document, summary)
            assert len(summary.split()) <= 30
        assert min(counts) >= 3 and max(counts) <= 8 and len(set(counts)) >= 4


def test_noise_only_touches_sources():
    clean = SyntheticCorpus(SyntheticConfig(seed=5, noise=0.0)).sentence_pairs("en", "de", 300)
    noisy = SyntheticCorpus(SyntheticConfig(seed=5, noise=0.1)).sentence_pairs("en", "de", 300)
    assert [t for _, t in clean] == [t for _, t in noisy]
    changed = sum(a != b for (a, _), (b, _) in zip(clean, noisy, strict=True))
    assert changed > 150
    assert all(s.endswith(".") for s, _ in noisy)


def test_vocabulary_knob_changes_lexicon_and_text():
    small = SyntheticCorpus(SyntheticConfig(n_lemmas=100))
    large = SyntheticCorpus(SyntheticConfig(n_lemmas=2000))
    for lang in LANGUAGES:
        assert len(small.lexicon(lang)) == 100
        assert len(large.lexicon(lang)) == 2000
    small_types = {w for d in small.documents("de", 300) for w in _words(d)}
    large_types = {w for d in large.documents("de", 300) for w in _words(d)}
    assert len(large_types) > 1.5 * len(small_types)
    depth0 = SyntheticCorpus(SyntheticConfig(max_clause_depth=0)).sentence_pairs("en", "de", 300)
    assert not any(", " in t for _, t in depth0)  # no relative or subordinate clause at depth 0


def test_impossible_requests_raise_value_error():
    corpus = SyntheticCorpus(SyntheticConfig(n_lemmas=40, max_clause_depth=0))
    with pytest.raises(ValueError, match="n_lemmas"):
        corpus.sentence_pairs("en", "de", 10**30, "test")
    with pytest.raises(ValueError, match="n=-1"):
        corpus.documents("en", -1)
    with pytest.raises(ValueError, match="unknown language"):
        corpus.sentence_pairs("en", "xx", 3)
    with pytest.raises(ValueError, match="both"):
        corpus.sentence_pairs("de", "de", 3)
    with pytest.raises(ValueError, match="unknown split"):
        corpus.summary_pairs("de", 3, "validation")
    with pytest.raises(UserError, match="n_lemmas"):
        SyntheticConfig(n_lemmas=5)
    with pytest.raises(UserError, match="doc_sentences"):
        SyntheticConfig(doc_sentences=(5, 2))
    # Wrongly typed values (e.g. strings from a study file) are config errors, not TypeErrors.
    with pytest.raises(UserError, match=r"n_lemmas.*integer"):
        SyntheticConfig(n_lemmas="600")
    with pytest.raises(UserError, match=r"noise.*number"):
        SyntheticConfig(noise="0.1")
    with pytest.raises(UserError, match="doc_sentences"):
        SyntheticConfig(doc_sentences=5)
    with pytest.raises(UserError, match="doc_sentences"):
        SyntheticConfig(doc_sentences=("3", "8"))


def _reference_speed_factor() -> float:
    """How much slower this machine is right now than an unloaded reference core (>1: slower).

    The same pure-Python work (1M random() calls) takes about 0.05 s on an unloaded modern core; the
    measured ratio lets a throughput floor hold on a loaded CI machine without becoming meaningless.
    """
    r = random.Random(0).random
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for _ in range(1_000_000):
            r()
        best = min(best, time.process_time() - start)
    return max(1.0, best / 0.05)


def test_throughput_floor():
    corpus = SyntheticCorpus(SyntheticConfig(seed=7))
    best = 0.0
    for attempt in range(3):
        # CPU time of this process: on a shared machine the wall clock also counts waiting for a core.
        start = time.process_time()
        tokens = sum(d.count(" ") + 1 for d in corpus.pretraining_text(("en", "de"), 150_000, split="train"))
        best = max(best, tokens / (time.process_time() - start))
        if best >= 300_000 and attempt == 0:
            break
    slowdown = _reference_speed_factor()
    assert best * slowdown >= 300_000, f"{best:,.0f} tokens/s at a machine slowdown of {slowdown:.1f}x"


def test_word_by_word_dictionary_translation_is_clearly_imperfect():
    """A unigram (Dice) dictionary learned from train pairs and applied word by word must not solve en→de."""
    sacrebleu = pytest.importorskip("sacrebleu")
    from collections import Counter, defaultdict

    corpus = SyntheticCorpus(SyntheticConfig(seed=0))

    def tokens(text: str) -> list[str]:
        return [w.strip(".,:").lower() for w in text.split()]

    source_count: Counter[str] = Counter()
    target_count: Counter[str] = Counter()
    joint: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for source, target in corpus.sentence_pairs("en", "de", 3000):
        source_words, target_words = set(tokens(source)), set(tokens(target))
        source_count.update(source_words)
        target_count.update(target_words)
        for word in source_words:
            joint[word].update(target_words)
    dictionary = {
        s: max(c, key=lambda t, s=s, c=c: 2 * c[t] / (source_count[s] + target_count[t]))
        for s, c in joint.items()
    }
    test = corpus.sentence_pairs("en", "de", 300, "test")
    hypotheses = [" ".join(dictionary.get(w, w) for w in tokens(s)) for s, _ in test]
    references = [" ".join(tokens(t)) for _, t in test]
    bleu = sacrebleu.corpus_bleu(hypotheses, [references]).score
    chrf = sacrebleu.corpus_chrf(hypotheses, [references]).score
    assert 5 < bleu < 40, bleu  # the lexicon is learnable, the word order and agreement are not word-by-word
    assert chrf > 50, chrf
