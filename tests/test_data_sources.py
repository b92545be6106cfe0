"""Loaders for parallel text, TSV, JSONL and Hugging Face datasets, and every validation error they raise."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cli_env
from ftscale.data.sources import (
    check_language,
    find_parallel_file,
    load_hf_dataset,
    load_jsonl,
    load_parallel_text,
    load_tsv,
    read_lines,
)
from ftscale.errors import DataError, UserError


def write(path: Path, text: str | bytes) -> Path:
    data = text.encode("utf-8") if isinstance(text, str) else text
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)
    return path


# ---- parallel text -------------------------------------------------------------------------------------------


def test_parallel_text_plain_and_gz(tmp_path: Path) -> None:
    src = write(tmp_path / "train.en.gz", "A dog runs.\nTwo men talk.\n")
    tgt = write(tmp_path / "train.de.gz", "Ein Hund rennt.\nZwei Männer reden.\n")
    examples, report = load_parallel_text(src, tgt, "en", "de")
    assert [(e.source, e.target) for e in examples] == [
        ("A dog runs.", "Ein Hund rennt."),
        ("Two men talk.", "Zwei Männer reden."),
    ]
    assert [e.id for e in examples] == ["train:1", "train:2"]
    assert {(e.src_lang, e.tgt_lang) for e in examples} == {("en", "de")}
    assert report.n_loaded == 2 and report.n_rows == 2 and report.n_trailing_blank_lines == 0

    plain_src = write(tmp_path / "val.en", "Hello\r\n")
    plain_tgt = write(tmp_path / "val.de", "\ufeffHallo")  # BOM and no final newline
    examples, _ = load_parallel_text(plain_src, plain_tgt, "EN", "de")
    assert examples[0].source == "Hello" and examples[0].target == "Hallo" and examples[0].src_lang == "en"
    assert find_parallel_file(tmp_path, "train", "en") == src
    assert find_parallel_file(tmp_path, "val", "de") == plain_tgt


def test_trailing_blank_lines_are_counted_not_loaded(tmp_path: Path) -> None:
    src = write(tmp_path / "a.en", "one\ntwo\n\n\n")
    tgt = write(tmp_path / "a.de", "eins\nzwei\n")
    examples, report = load_parallel_text(src, tgt, "en", "de")
    assert len(examples) == 2
    assert report.n_trailing_blank_lines == 2
    assert "2 blank line(s) at end of file ignored" in report.summary()


def test_missing_file(tmp_path: Path) -> None:
    write(tmp_path / "a.en", "x\n")
    with pytest.raises(DataError, match=r"a\.de: file not found"):
        load_parallel_text(tmp_path / "a.en", tmp_path / "a.de", "en", "de")
    with pytest.raises(DataError, match=r"train\.fr\.gz: file not found"):
        find_parallel_file(tmp_path, "train", "fr")


def test_empty_file(tmp_path: Path) -> None:
    write(tmp_path / "a.en", "x\n")
    write(tmp_path / "a.de", "\n")
    with pytest.raises(DataError, match=r"a\.de: file is empty"):
        load_parallel_text(tmp_path / "a.en", tmp_path / "a.de", "en", "de")
    write(tmp_path / "b.jsonl.gz", b"")
    with pytest.raises(DataError, match="file is empty"):
        load_jsonl(tmp_path / "b.jsonl.gz", "en", "de")


def test_misaligned_line_counts_names_both(tmp_path: Path) -> None:
    write(tmp_path / "a.en", "1\n2\n3\n")
    write(tmp_path / "a.de", "1\n2\n")
    with pytest.raises(DataError) as info:
        load_parallel_text(tmp_path / "a.en", tmp_path / "a.de", "en", "de")
    message = str(info.value)
    assert "a.en has 3 lines" in message and "a.de has 2" in message and "\n" not in message


def test_non_utf8_reports_line(tmp_path: Path) -> None:
    write(tmp_path / "a.en", "ok\nfine\n")
    write(tmp_path / "a.de", "gut\nsch\xf6n\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"a\.de:2: not valid UTF-8 \(byte 0xf6\)"):
        load_parallel_text(tmp_path / "a.en", tmp_path / "a.de", "en", "de")
    write(tmp_path / "b.tsv.gz", "x\ty\n\n\nbad\t\xff\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"b\.tsv\.gz:4: not valid UTF-8"):
        read_lines(tmp_path / "b.tsv.gz")


def test_empty_source_or_target_names_line(tmp_path: Path) -> None:
    write(tmp_path / "a.en", "one\n \nthree\n")
    write(tmp_path / "a.de", "eins\nzwei\ndrei\n")
    with pytest.raises(DataError, match=r"a\.en:2: empty source"):
        load_parallel_text(tmp_path / "a.en", tmp_path / "a.de", "en", "de")
    write(tmp_path / "b.en", "one\ntwo\n")
    write(tmp_path / "b.de", "eins\n\t\n")
    with pytest.raises(DataError, match=r"misaligned|has 2 lines but"):
        # The target's last line is blank, so it counts as trailing and the files no longer align.
        load_parallel_text(tmp_path / "b.en", tmp_path / "b.de", "en", "de")
    write(tmp_path / "c.en", "one\ntwo\nthree\n")
    write(tmp_path / "c.de", "eins\n\ndrei\n")
    with pytest.raises(DataError, match=r"c\.de:2: empty target"):
        load_parallel_text(tmp_path / "c.en", tmp_path / "c.de", "en", "de")
    examples, report = load_parallel_text(tmp_path / "c.en", tmp_path / "c.de", "en", "de", empty="skip")
    assert [e.id for e in examples] == ["c:1", "c:3"]
    assert report.n_skipped_empty == 1 and "1 skipped" in report.summary()


def test_unknown_language_code(tmp_path: Path) -> None:
    write(tmp_path / "a.en", "x\n")
    write(tmp_path / "a.de", "y\n")
    with pytest.raises(DataError, match=r"unknown language code 'ge'.*ISO 639-1"):
        load_parallel_text(tmp_path / "a.en", tmp_path / "a.de", "en", "ge")
    assert check_language(" ZH ", "here") == "zh"
    with pytest.raises(DataError, match="here: unknown language code 'english'"):
        check_language("english", "here")


# ---- TSV -----------------------------------------------------------------------------------------------------


def test_tsv_columns_by_index_and_name(tmp_path: Path) -> None:
    write(tmp_path / "ts.tsv.gz", "to title\t摘要一\t标题一\nto title\t摘要二\t标题二\n")
    examples, report = load_tsv(tmp_path / "ts.tsv.gz", 1, 2, "zh", "zh")
    assert [(e.source, e.target) for e in examples] == [("摘要一", "标题一"), ("摘要二", "标题二")]
    assert [e.id for e in examples] == ["ts:1", "ts:2"] and report.n_loaded == 2

    write(tmp_path / "named.tsv", "id\ten\tde\nx1\tHello\tHallo\nx2\tBye\tTschüss\n")
    examples, _ = load_tsv(tmp_path / "named.tsv", "en", "de", "en", "de", id_column="id")
    assert [(e.id, e.source, e.target) for e in examples] == [
        ("x1", "Hello", "Hallo"),
        ("x2", "Bye", "Tschüss"),
    ]
    with pytest.raises(DataError, match=r"named\.tsv: no column named 'fr' for the target; the header has"):
        load_tsv(tmp_path / "named.tsv", "en", "fr", "en", "fr")
    with pytest.raises(DataError, match="given by name but header=False"):
        load_tsv(tmp_path / "named.tsv", "en", "de", "en", "de", header=False)


def test_tsv_validation_errors(tmp_path: Path) -> None:
    write(tmp_path / "short.tsv", "a\tb\nonly-one-column\n")
    with pytest.raises(DataError, match=r"short\.tsv:2: 1 tab-separated column\(s\), need at least 2"):
        load_tsv(tmp_path / "short.tsv", 0, 1, "en", "de")
    write(tmp_path / "empty_target.tsv", "a\tb\nc\t \n")
    with pytest.raises(DataError, match=r"empty_target\.tsv:2: empty target"):
        load_tsv(tmp_path / "empty_target.tsv", 0, 1, "en", "de")
    write(tmp_path / "dup.tsv", "id\tsrc\ttgt\n7\ta\tb\n8\tc\td\n7\te\tf\n")
    with pytest.raises(DataError, match=r"dup\.tsv:4: duplicate id '7' \(first seen at line 2\)"):
        load_tsv(tmp_path / "dup.tsv", "src", "tgt", "en", "de", id_column="id")
    write(tmp_path / "header_only.tsv", "src\ttgt\n")
    with pytest.raises(DataError, match="only a header row"):
        load_tsv(tmp_path / "header_only.tsv", "src", "tgt", "en", "de")
    with pytest.raises(DataError, match="file not found"):
        load_tsv(tmp_path / "nope.tsv", 0, 1, "en", "de")


def test_tsv_negative_column_index_is_rejected(tmp_path: Path) -> None:
    """A negative index would silently read from the end of the row."""
    write(tmp_path / "neg.tsv", "a\tb\tc\n")
    with pytest.raises(
        DataError, match=r"neg\.tsv: target column index -1 is negative; give a 0-based index"
    ):
        load_tsv(tmp_path / "neg.tsv", 0, -1, "en", "de")
    with pytest.raises(DataError, match=r"neg\.tsv: id column index -3 is negative"):
        load_tsv(tmp_path / "neg.tsv", 0, 1, "en", "de", id_column=-3)


# ---- JSONL ---------------------------------------------------------------------------------------------------


def jsonl(path: Path, rows: list[dict | str]) -> Path:
    return write(
        path,
        "".join(
            (row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n" for row in rows
        ),
    )


def test_jsonl_fields_languages_and_meta(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path / "mix.jsonl",
        [
            {"id": "a", "source": "Dokument", "target": "Zusammenfassung", "lang": "de", "title": "T"},
            {"id": "b", "source": "文档", "target": "摘要", "src_lang": "zh", "tgt_lang": "zh"},
            {"source": "Doc", "target": "Sum"},
        ],
    )
    examples, report = load_jsonl(path, src_lang="en", tgt_lang="en")
    assert [(e.id, e.src_lang, e.tgt_lang) for e in examples] == [
        ("a", "en", "de"),
        ("b", "zh", "zh"),
        ("mix:3", "en", "en"),
    ]
    assert examples[0].meta == {"title": "T"} and report.n_loaded == 3


def test_jsonl_validation_errors(tmp_path: Path) -> None:
    cases = {
        "dup.jsonl": (
            [{"id": 1, "source": "a", "target": "b"}, {"id": 1, "source": "c", "target": "d"}],
            r"dup\.jsonl:2: duplicate id '1'",
        ),
        "empty.jsonl": (
            [{"source": "a", "target": "b"}, {"source": "c", "target": ""}],
            r"empty\.jsonl:2: empty target",
        ),
        "missing.jsonl": ([{"source": "a"}], r"missing\.jsonl:1: missing field 'target'"),
        "badjson.jsonl": (["{not json"], r"badjson\.jsonl:1: invalid JSON"),
        "lang.jsonl": (
            [{"source": "a", "target": "b", "tgt_lang": "xx"}],
            r"lang\.jsonl:1 \(tgt_lang\): unknown language code 'xx'",
        ),
        "type.jsonl": ([{"source": "a", "target": 3}], r"type\.jsonl:1: field 'target' must be a string"),
        "blank.jsonl": (
            [{"source": "a", "target": "b"}, "", {"source": "c", "target": "d"}],
            r"blank\.jsonl:2: blank line",
        ),
    }
    for name, (rows, pattern) in cases.items():
        with pytest.raises(DataError, match=pattern):
            load_jsonl(jsonl(tmp_path / name, rows), "en", "de")
    nolang = jsonl(tmp_path / "nolang.jsonl", [{"source": "a", "target": "b"}])
    with pytest.raises(DataError, match=r"nolang\.jsonl:1: no src_lang"):
        load_jsonl(nolang)
    examples, report = load_jsonl(
        jsonl(tmp_path / "skip.jsonl", [{"source": "a", "target": "b"}, {"source": " ", "target": "d"}, ""]),
        "en",
        "de",
        empty="skip",
    )
    # The trailing "" row is a trailing blank line, not a skipped row.
    assert len(examples) == 1 and report.n_skipped_empty == 1


# ---- Hugging Face datasets -----------------------------------------------------------------------------------


def test_hf_from_disk_and_local_file(tmp_path: Path) -> None:
    import datasets

    data = datasets.Dataset.from_dict(
        {"translation": [{"en": "Hi", "de": "Hallo"}, {"en": "Yes", "de": "Ja"}], "uid": ["u1", "u2"]}
    )
    datasets.DatasetDict({"test": data}).save_to_disk(str(tmp_path / "saved"))
    examples, report = load_hf_dataset(
        tmp_path / "saved", "test", "translation.en", "translation.de", "en", "de", id_field="uid"
    )
    assert [(e.id, e.source, e.target) for e in examples] == [("u1", "Hi", "Hallo"), ("u2", "Yes", "Ja")]
    assert report.n_loaded == 2
    with pytest.raises(DataError, match="no split 'train'"):
        load_hf_dataset(tmp_path / "saved", "train", "translation.en", "translation.de", "en", "de")
    with pytest.raises(DataError, match=r"no field 'translation\.fr'"):
        load_hf_dataset(tmp_path / "saved", "test", "translation.fr", "translation.de", "fr", "de")

    path = jsonl(tmp_path / "local.jsonl", [{"src": "Hi", "tgt": "你好"}])
    examples, _ = load_hf_dataset(path, "train", "src", "tgt", "en", "zh")
    assert examples[0].target == "你好" and examples[0].tgt_lang == "zh"
    with pytest.raises(DataError, match="not a saved dataset directory or data file"):
        load_hf_dataset(tmp_path / "missing_dir", "train", "src", "tgt", "en", "zh")


def test_hf_hub_unreachable_is_one_line_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'wmt/wmt14' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UserError) as info:
        load_hf_dataset(
            "wmt/wmt14", "test", "translation.en", "translation.de", "en", "de", config_name="de-en"
        )
    assert str(info.value) == (
        "cannot reach the Hugging Face hub for 'wmt/wmt14' (offline?): download it elsewhere and pass a local path"
    )


def test_hf_hub_offline_mode_real_library(tmp_path: Path) -> None:
    """With the real ``datasets`` in offline mode (fast: no network retries), the same one-line error results."""
    env = cli_env() | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    code = (
        "from ftscale.data.sources import load_hf_dataset\n"
        "from ftscale.errors import UserError\n"
        "try:\n"
        "    load_hf_dataset('wmt/wmt14', 'test', 'translation.en', 'translation.de', 'en', 'de', config_name='de-en')\n"
        "except UserError as exc:\n"
        "    print('USERERROR', exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert "USERERROR cannot reach the Hugging Face hub for 'wmt/wmt14' (offline?)" in result.stdout, (
        result.stderr[-2000:]
    )
