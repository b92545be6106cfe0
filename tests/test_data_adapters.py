"""Adapters and the task registry: on small files written here, on the synthetic corpus, and on ../shared/data."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from ftscale.data.datasets import (
    DATA_DIR_ENV,
    csl_task,
    klexikon_task,
    load_task,
    multi30k_task,
    pretraining_corpus,
    resolve_data_dir,
    split_sentences,
    task_names,
    tatoeba_task,
    wmt_task,
)
from ftscale.data.sources import load_hf_dataset
from ftscale.data.subsets import subset
from ftscale.data.tokenizer import train_tokenizer
from ftscale.errors import DataError, UserError


def gz(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(text)


@pytest.fixture
def mini_data(tmp_path: Path) -> Path:
    """A miniature copy of the data directory layout with a handful of rows per file."""
    root = tmp_path / "data"
    lines = {lang: [f"{lang} sentence {i}." for i in range(12)] for lang in ("en", "de", "fr", "cs")}
    for split, n in (("train", 12), ("val", 4), ("test_2016_flickr", 5)):
        for lang, sentences in lines.items():
            gz(
                root / "multi30k" / f"{split}.{lang}.gz",
                "\n".join(f"{s} {split}" for s in sentences[:n]) + "\n",
            )
    # Tatoeba: sorted by length, several Chinese translations per English sentence, trailing blank line.
    tatoeba = []
    for i in range(30):
        for j in range(1 + i % 3):
            tatoeba.append(
                f"Sentence {i}.\t句子{i}版本{j}。\tCC-BY 2.0 (France) Attribution: tatoeba.org #{i} & #{j}"
            )
    gz(root / "tatoeba_eng_cmn" / "cmn.txt.gz", "\ufeff" + "\n".join(tatoeba) + "\n\n")
    rows = []
    for i, split in enumerate(["train"] * 6 + ["validation"] * 2 + ["test"] * 2):
        rows.append(
            {
                "title": f"T{i}",
                "split": split,
                "wiki": f"Wiki eins {i}.\nWiki zwei {i}.\n\nWiki drei {i}.",
                "klexikon": f"Klexikon eins {i}.\nKlexikon zwei {i}.",
            }
        )
    gz(
        root / "klexikon_de" / "klexikon.jsonl.gz",
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
    )
    for split, n in (("dev", 120), ("test", 6)):
        gz(
            root / "csl_title_zh" / f"ts_{split}.tsv.gz",
            "".join(f"to title\t摘要{split}{i}。\t标题{i}\n" for i in range(n)),
        )
    # monolingual text: articles and a novel, one paragraph per line
    for folder, lang in (("wikipedia_en", "en"), ("wikipedia_zh", "zh")):
        articles = [
            {"id": str(i), "title": f"A{i}", "text": f"{lang} article {i}.\n\nSecond {i}."} for i in range(3)
        ]
        gz(
            root / folder / "part0.jsonl.gz",
            "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in articles),
        )
    novel = {
        "id": "DEU001",
        "title": "Roman",
        "text": "\n".join(f"Absatz {i} des Romans." for i in range(10)),
    }
    gz(root / "eltec_de" / "eltec_deu.jsonl.gz", json.dumps(novel, ensure_ascii=False) + "\n")
    return root


# ---- data directory and registry -----------------------------------------------------------------------------


def test_data_dir_resolution(mini_data: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resolve_data_dir(mini_data) == mini_data
    monkeypatch.setenv(DATA_DIR_ENV, str(mini_data))
    assert resolve_data_dir() == mini_data
    assert (
        load_task("csl-zh", n_dev=5).test[0].source == "摘要test0。"
    )  # found through the environment variable
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=rf"nowhere: data directory not found \(from \${DATA_DIR_ENV}\)"):
        resolve_data_dir()
    monkeypatch.delenv(DATA_DIR_ENV)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"from the default \.\./shared/data"):
        resolve_data_dir()
    with pytest.raises(DataError, match=r"multi30k: data set folder not found"):
        multi30k_task(tmp_path)


def test_registry_errors() -> None:
    with pytest.raises(UserError) as info:
        load_task("wmt-en-de")
    message = str(info.value)
    assert message.startswith("unknown task 'wmt-en-de'; valid names:")
    for name in (
        "tatoeba-en-zh",
        "klexikon-de",
        "csl-zh",
        "sum-de-zh",
        "synthetic-<src>-<tgt>",
        "multi30k-<src>-<tgt>",
    ):
        assert name in message
    assert len(task_names()) == 8
    with pytest.raises(UserError, match="unknown task 'multi30k-en-xx'"):
        load_task("multi30k-en-xx")
    with pytest.raises(
        UserError, match=r"task 'csl-zh': unknown option\(s\) \['n_train'\]; allowed: .*n_dev"
    ):
        load_task("csl-zh", n_train=5)
    with pytest.raises(UserError, match=r"unknown option\(s\) \['src'\]"):
        load_task("synthetic-en-de", src="fr")


# ---- adapters on miniature files -----------------------------------------------------------------------------


def test_multi30k_adapter(mini_data: Path) -> None:
    data = load_task("multi30k-en-de", mini_data)
    assert (len(data.train), len(data.dev), len(data.test)) == (12, 4, 5)
    assert data.train[0].source == "en sentence 0. train" and data.train[0].target == "de sentence 0. train"
    assert sorted(data.zero_shot) == ["cs-de", "fr-de"]
    assert [e.target for e in data.zero_shot["fr-de"]] == [e.target for e in data.test]
    assert data.zero_shot["cs-de"][0].src_lang == "cs"
    # Pretraining text: each side of train, shuffled separately so pairs are not aligned.
    english = "\n".join(data.pretraining_text["en"]()).splitlines()
    german = "\n".join(data.pretraining_text["de"]()).splitlines()
    assert sorted(english) == sorted(e.source for e in data.train)
    assert [s.split()[2] for s in english] != [s.split()[2] for s in german]
    fr_de = load_task("multi30k-fr-de", mini_data, zero_shot_sources=("en",))
    assert fr_de.train[0].src_lang == "fr" and sorted(fr_de.zero_shot) == ["en-de"]


def test_tatoeba_adapter_splits_by_english_sentence(mini_data: Path) -> None:
    data = tatoeba_task(mini_data, seed=0, n_dev=5, n_test=5)
    total = len(data.train) + len(data.dev) + len(data.test)
    assert total == sum(1 + i % 3 for i in range(30))
    split_sources = [{e.source for e in part} for part in (data.train, data.dev, data.test)]
    assert not (
        split_sources[0] & split_sources[1]
        or split_sources[0] & split_sources[2]
        or split_sources[1] & split_sources[2]
    )
    # Sizes count pairs; a group of up to 3 pairs is never split, so a split may overshoot by at most 2.
    assert 5 <= len(data.dev) <= 7 and 5 <= len(data.test) <= 7
    assert data.train[0].meta["attribution"].startswith("CC-BY")
    assert data.reports[0].n_trailing_blank_lines == 1
    assert [e.id for e in tatoeba_task(mini_data, seed=0, n_dev=5, n_test=5).test] == [
        e.id for e in data.test
    ]
    assert [e.id for e in tatoeba_task(mini_data, seed=1, n_dev=5, n_test=5).test] != [
        e.id for e in data.test
    ]
    # Sorted by length upstream: a random split must not put only the first (shortest) lines in test.
    assert max(int(e.id.split(":")[1]) for e in data.test) > 15
    with pytest.raises(DataError, match="leaves no training data"):
        tatoeba_task(mini_data, n_dev=15, n_test=15)


def test_klexikon_adapter(mini_data: Path) -> None:
    data = klexikon_task(mini_data, k_wiki_sentences=2, n_summary_sentences=1)
    assert (len(data.train), len(data.dev), len(data.test)) == (6, 2, 2)
    assert data.train[0].source == "Wiki eins 0. Wiki zwei 0." and data.train[0].target == "Klexikon eins 0."
    assert data.train[0].meta["title"] == "T0" and data.task.kind == "summarization"
    longer = klexikon_task(mini_data, k_wiki_sentences=5, n_summary_sentences=2)
    assert (
        longer.test[0].source == "Wiki eins 8. Wiki zwei 8. Wiki drei 8."
        and longer.test[0].target.count(".") == 2
    )
    wiki = list(data.pretraining_text["de"]())
    assert len(wiki) == 6 and all(
        "8" not in doc and "9" not in doc for doc in wiki
    )  # held-out articles excluded


def test_csl_adapter(mini_data: Path) -> None:
    data = csl_task(mini_data, seed=0, n_dev=5)
    assert (len(data.train), len(data.dev), len(data.test)) == (115, 5, 6)
    assert {e.id for e in data.train}.isdisjoint({e.id for e in data.dev})
    assert data.test[0].source == "摘要test0。" and data.test[0].target == "标题0"
    with pytest.raises(UserError, match="n_dev must be between 1 and 119"):
        csl_task(mini_data, n_dev=120)


def test_sum_de_zh_mix_keeps_ratio(mini_data: Path) -> None:
    data = load_task("sum-de-zh", mini_data, n_dev_zh=5)
    assert data.task.languages == ("de", "zh")
    assert data.language_counts() == {"de": 6, "zh": 115}
    assert data.task.format(data.train[-1])[0].startswith("Summarize the following document in Chinese:")
    for n in (20, 60, 121):
        chosen = subset(data.train, n, seed=0)
        assert abs(sum(e.tgt_lang == "de" for e in chosen) - n * 6 / 121) <= 1
    assert set(data.pretraining_text) == {"de", "zh"}
    balanced = load_task("sum-de-zh", mini_data, n_dev_zh=5, ratios={"de": 1, "zh": 1})
    assert balanced.language_counts() == {"de": 6, "zh": 6} and len(balanced.test) == len(data.test)


def test_pretraining_corpus_on_miniature(mini_data: Path) -> None:
    options = {"tatoeba-en-zh": {"n_dev": 5, "n_test": 5}}
    corpus = pretraining_corpus(mini_data, langs=("en", "de", "zh"), seed=0, task_options=options)
    held_out = {
        e.target for e in [*tatoeba_task(mini_data, n_dev=5, n_test=5).test, *csl_task(mini_data).dev]
    }
    chinese_lines = {line for doc in corpus.documents["zh"] for line in doc.splitlines()}
    assert chinese_lines and not held_out & chinese_lines
    assert set(corpus.sources["de"]) == {"multi30k", "klexikon-wiki", "eltec"}
    assert set(corpus.sources["en"]) == {"multi30k", "tatoeba", "wikipedia"}
    assert set(corpus.sources["zh"]) == {"tatoeba", "csl", "wikipedia"}
    assert "en article 2.\nSecond 2." in corpus.by_source["en"]["wikipedia"]
    german = "\n".join(corpus.documents["de"])
    assert "de sentence 3. train" in german and "val" not in german and "test" not in german
    assert "Wiki eins 0." in german and "Wiki eins 8." not in german
    chars = corpus.char_counts()
    assert chars["de"] == sum(len(d) for d in corpus.documents["de"]) > 0
    cut = pretraining_corpus(mini_data, langs=("de",), max_chars_per_language=50)
    assert cut.char_counts()["de"] == 50
    with pytest.raises(UserError, match="no real monolingual text for 'fr'"):
        pretraining_corpus(mini_data, langs=("fr",))


def test_monolingual_text_is_cut_into_pieces_at_paragraphs(mini_data: Path) -> None:
    from ftscale.data.datasets.monolingual import monolingual_documents, paragraph_pieces

    assert list(paragraph_pieces("a\n\nbb\ncc\n" + "d" * 9, max_chars=6)) == ["a\nbb", "cc", "d" * 9]
    pieces = monolingual_documents(mini_data, "de", "eltec", max_chars=50)
    assert "\n".join(pieces) == "\n".join(f"Absatz {i} des Romans." for i in range(10))
    assert len(pieces) > 1 and all(len(p) <= 50 for p in pieces)
    gz(mini_data / "wikipedia_zh" / "part0.jsonl.gz", '{"id": "1"}\n')
    with pytest.raises(DataError, match=r"part0.jsonl.gz:1: no 'text' string"):
        monolingual_documents(mini_data, "zh", "wikipedia")
    (mini_data / "wikipedia_zh" / "part0.jsonl.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cannot read gzipped JSONL"):
        monolingual_documents(mini_data, "zh", "wikipedia")
    import shutil

    shutil.rmtree(mini_data / "eltec_de")
    with pytest.raises(DataError, match="eltec_de: data set folder not found"):
        pretraining_corpus(mini_data, langs=("de",))


def test_shared_validation_text_is_dev_text_of_every_source(mini_data: Path) -> None:
    from ftscale.data.datasets.pretraining import shared_validation_texts

    options = {"tatoeba-en-zh": {"n_dev": 5, "n_test": 5}}
    texts = shared_validation_texts(mini_data, ["de", "en"], task_options=options)
    assert texts[:2] == ["en sentence 0. val", "de sentence 0. val"]  # interleaved: every source in the head
    assert any(t.startswith("Sentence") for t in texts) and any(t.startswith("Wiki eins") for t in texts)
    corpus = pretraining_corpus(mini_data, langs=("en", "de"), task_options=options)
    trained = {line for docs in corpus.documents.values() for doc in docs for line in doc.splitlines()}
    assert not set(texts) & trained


def test_a_shared_family_reads_its_corpus_and_held_out_text(mini_data: Path, tmp_path: Path) -> None:
    """The pretraining job of a shared-corpus family takes its documents and validation text from what its
    tokenizer job recorded (languages, data directory), not from any task."""
    from types import SimpleNamespace

    from ftscale.study.jobs import CORPUS_MARKER, _corpus_of_pretrain

    tokenizer_dir = tmp_path / "tokenizer-job"
    tokenizer_dir.mkdir()
    shared = {"langs": ["de"], "data_dir": str(mini_data), "version": 2}
    (tokenizer_dir / CORPUS_MARKER).write_text(
        json.dumps({"task": None, "corpus": "shared", "shared": shared})
    )
    ctx = SimpleNamespace(dep_dirs={"tok": tokenizer_dir})
    texts, val = _corpus_of_pretrain(ctx, "shared")
    docs = list(texts)
    assert any("Absatz 3 des Romans." in d for d in docs) and any("Wiki eins 0." in d for d in docs)
    assert val and not {line for d in docs for line in d.splitlines()} & set(val)
    (tokenizer_dir / CORPUS_MARKER).unlink()
    with pytest.raises(UserError, match=f"{CORPUS_MARKER}: missing"):
        _corpus_of_pretrain(ctx, "shared")


def test_task_languages_are_known_without_loading(mini_data: Path) -> None:
    from ftscale.data.datasets.registry import task_languages

    options = {"tatoeba-en-zh": {"n_dev": 5, "n_test": 5}, "csl-zh": {"n_dev": 5}}
    for name in ("multi30k-en-de", "multi30k-fr-de", "tatoeba-en-zh", "klexikon-de", "csl-zh"):
        languages = load_task(name, mini_data, **options.get(name, {})).task.languages
        assert set(task_languages(name)) == set(languages), name
    assert task_languages("synthetic-sum-de") == ("de",) and task_languages("wmt19-en-zh") == ("en", "zh")
    with pytest.raises(UserError, match="unknown task 'nope'"):
        task_languages("nope")


# ---- synthetic -----------------------------------------------------------------------------------------------


def test_synthetic_translation_and_summarization() -> None:
    data = load_task("synthetic-en-de", n_train=40, n_dev=5, n_test=8, pretraining_tokens=500)
    assert (len(data.train), len(data.dev), len(data.test)) == (40, 5, 8)
    assert data.task.name == "synthetic-en-de" and data.task.languages == ("en", "de")
    assert {(e.src_lang, e.tgt_lang) for e in data.train} == {("en", "de")}
    assert len({e.id for e in data.train}) == 40
    assert not {e.source for e in data.train} & {e.source for e in data.test}
    assert [e.target for e in data.zero_shot["fr-de"]] == [e.target for e in data.test]
    german = list(data.pretraining_text["de"]())
    assert german and sum(len(doc.split()) for doc in german) >= 400
    again = load_task("synthetic-en-de", n_train=40, n_dev=5, n_test=8)
    assert [e.source for e in again.train] == [e.source for e in data.train]

    summaries = load_task("synthetic-sum-de", n_train=6, n_dev=2, n_test=2)
    assert summaries.task.kind == "summarization" and summaries.task.languages == ("de",)
    assert all(len(e.target) < len(e.source) for e in summaries.train)
    assert summaries.task.format(summaries.train[0])[0].startswith(
        "Summarize the following document in German:"
    )


# ---- the real data beside the repository ---------------------------------------------------------------------


def test_split_sentences() -> None:
    assert split_sentences("Er kam. Dann ging er! Wirklich?\n\nJa.") == [
        "Er kam.",
        "Dann ging er!",
        "Wirklich?",
        "Ja.",
    ]
    assert split_sentences("我来了。你呢？好") == ["我来了。", "你呢？", "好"]
    assert split_sentences("Es ist 3.5 m hoch. Gut.", limit=1) == ["Es ist 3.5 m hoch."]


@pytest.mark.shared_data
def test_real_multi30k(shared_data: Path) -> None:
    data = load_task("multi30k-en-de", shared_data)
    assert (len(data.train), len(data.dev), len(data.test)) == (29000, 1014, 1000)
    assert data.test[0].source == "A man in an orange hat starring at something."
    assert {k: len(v) for k, v in data.zero_shot.items()} == {"fr-de": 1000, "cs-de": 1000}
    assert data.zero_shot["cs-de"][0].source == "Muž v oranžovém klobouku na něco zírá."
    assert [e.target for e in data.zero_shot["cs-de"]] == [e.target for e in data.test]


@pytest.mark.shared_data
def test_real_tatoeba(shared_data: Path) -> None:
    data = load_task("tatoeba-en-zh", shared_data)
    assert len(data.train) + len(data.dev) + len(data.test) == 29155
    assert len(data.dev) >= 1000 and len(data.test) >= 1000
    assert not {e.source for e in data.train} & {e.source for e in data.test}
    assert not data.test[0].source.startswith("\ufeff") and data.test[0].tgt_lang == "zh"


@pytest.mark.shared_data
def test_real_summarization_tasks(shared_data: Path) -> None:
    data = load_task("sum-de-zh", shared_data)
    assert data.language_counts("train") == {"de": 2350, "zh": 900}
    assert (len(data.dev), len(data.test)) == (274 + 100, 274 + 1000)
    abba = next(e for e in data.train if e.meta.get("title") == "ABBA")
    assert abba.target == "ABBA war eine Musikgruppe aus Schweden."
    assert abba.source.startswith("ABBA ist eine schwedische Popgruppe") and abba.source.count(".") >= 2
    chosen = subset(data.train, 650, seed=2)
    assert sum(e.tgt_lang == "zh" for e in chosen) == pytest.approx(650 * 900 / 3250, abs=1)


@pytest.mark.shared_data
def test_real_pretraining_corpus_counts(shared_data: Path) -> None:
    corpus = pretraining_corpus(shared_data, langs=("en", "de", "zh"), max_chars_per_language=300_000)
    assert all(count == 300_000 for count in corpus.char_counts().values())
    sample = [doc[:2000] for docs in corpus.documents.values() for doc in docs[:50]]
    tok = train_tokenizer(sample, vocab_size=1000)
    tokens = corpus.token_counts(tok)
    assert all(0 < tokens[lang] < 300_000 for lang in ("en", "de"))  # BPE merges Latin letters
    n_bytes = sum(len(doc.encode()) for doc in corpus.documents["zh"])
    assert 0 < tokens["zh"] < n_bytes  # at worst one token per UTF-8 byte
    assert "de:" in corpus.summary(tok) and "tokens" in corpus.summary(tok)
    assert set(corpus.sources["de"]) <= {"klexikon-wiki", "multi30k", "eltec"}
    # (That held-out Klexikon/Tatoeba/CSL examples stay out is checked on the miniature data above.)


def test_wmt_task_from_a_local_hf_copy(tmp_path):
    """The paper's WMT task through `datasets`, from a saved copy (the hub is unreachable here)."""
    import datasets

    from ftscale.data.datasets import load_task

    rows = [{"translation": {"de": f"Satz {i}.", "en": f"Sentence {i}."}} for i in range(30)]
    dd = datasets.DatasetDict(
        {split: datasets.Dataset.from_list(rows) for split in ("train", "validation", "test")}
    )
    dd.save_to_disk(str(tmp_path / "wmt14"))
    data = load_task("wmt14-en-de", dataset=str(tmp_path / "wmt14"), n_train=10)
    assert len(data.train) == 10 and len(data.test) == 30
    assert data.train[3].source == "Sentence 3." and data.train[3].target == "Satz 3."
    assert data.task.kind == "translation" and data.task.languages == ("en", "de")
    assert data.reports[0].n_rows == 10  # only the requested training rows are read
    with pytest.raises(UserError, match="no WMT set for de->en"):
        wmt_task(src="de", tgt="en", dataset=str(tmp_path / "wmt14"))
    (tmp_path / "bad.jsonl").write_text('{"translation": \n')
    with pytest.raises(DataError, match=r"bad\.jsonl: cannot read as json"):
        load_hf_dataset(tmp_path / "bad.jsonl", "train", "a", "b", "en", "de")


def test_wmt_task_offline_is_a_clear_error(monkeypatch):
    import pytest

    from ftscale.data.datasets import load_task
    from ftscale.errors import UserError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(UserError, match="wmt"):
        load_task("wmt14-en-de", n_train=10)
