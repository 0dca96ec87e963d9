"""Column-wise prediction files (zoo.prediction_files): polars' readers and string kernels give what the
Python readers and writers give, row for row and byte for byte, and the same errors naming the file and line."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from zoo_yt8m_metrics.kaggle import KaggleCsvFormat, read_kaggle_columns

from zoo import prediction_files as prediction_io
from zoo.contracts import ColumnarPredictionFormat, Prediction
from zoo.engine.infer import ensemble as ens
from zoo.engine.infer.predictions import JsonLinesFormat, read_jsonl_columns, write_jsonl
from zoo.errors import DataError
from zoo.prediction_files import PredictionColumns

FORMATS = [KaggleCsvFormat, JsonLinesFormat]
NO_POLARS = "polars is not installed (the Python readers and writers do all the work)"
needs_polars = pytest.mark.skipif(prediction_io.fast_library() is None, reason=NO_POLARS)


@pytest.fixture(params=["polars", "python"])
def parser(request, monkeypatch):
    """Every reading test runs through polars and through the Python line parsers alone."""
    if request.param == "polars" and prediction_io.fast_library() is None:
        pytest.skip(NO_POLARS)
    if request.param == "python":
        monkeypatch.setattr(prediction_io, "FAST", None)
    return request.param


def rows_path(path: Path, fmt) -> ens.TopKTable:
    """The previous path: one Prediction per row, ranked by TopKTable.from_predictions."""
    return ens.TopKTable.from_predictions(str(path), fmt().read(path))


def same_table(a: ens.TopKTable, b: ens.TopKTable) -> None:
    assert a.ids.tolist() == b.ids.tolist()
    assert np.array_equal(a.classes, b.classes)
    assert np.array_equal(a.probs, b.probs)


CSV_SPELLINGS = (
    "VideoId,LabelConfidencePairs\r\n"
    "b,3 0.5 1 0.5 2 0.25\r\n"  # a tie: lower class first
    "a,  7 1e-3   2 2.5E-7 9 .5 4 +1. \r\n"  # scientific notation, odd spacing, signs
    "c,\r\n"  # no pairs
    "\r\n"
    "  d ,0012 0.123456789012345678901234567890\r"  # many digits, leading zeros, a lone CR
    "e,5 1_0.5 6 0.1\n"  # an underscore: the Python reader takes it
    "é,1 0.3\n"  # non-ASCII id
    "f,1 0.9999999999999999999 2 3.4028235e38"  # no newline at the end
)
JSONL_SPELLINGS = (
    '{"id": "b", "classes": [3, 1, 2], "scores": [0.5, 0.5, 0.25]}\r\n'
    '{"scores":[1e-3,2.5E-7],"id":"a","classes":[7,2]}\n'  # other key order, no spaces
    '{"id": "c", "classes": [], "scores": []}\n'
    "   \n"
    '{"id": "d", "classes": [12], "scores": [0.123456789012345678901234567890], "names": ["x, y"]}\r'
    '{"id": "q\\"uote\\u00e9", "classes": [1, 0], "scores": [1, -0.0]}\n'  # escapes, integer score
    '{"id": "e", "classes": [5], "scores": [3.4028235e38], "extra": {"k": [1]}}'  # other keys, no newline
)


@pytest.mark.parametrize("fmt", FORMATS)
def test_fast_read_equals_the_row_path_on_every_spelling(fmt, parser, tmp_path, monkeypatch):
    text = CSV_SPELLINGS if fmt is KaggleCsvFormat else JSONL_SPELLINGS
    path = tmp_path / f"p{fmt.suffix}"
    path.write_bytes(text.encode("utf-8"))
    same_table(ens.read_prediction_file(path), rows_path(path, fmt))
    monkeypatch.setattr(prediction_io, "CHUNK_BYTES", 5)  # lines (and CR LF) split across reads
    same_table(ens.read_prediction_file(path), rows_path(path, fmt))


def test_columns_keep_file_order_and_line_numbers(parser, tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes(CSV_SPELLINGS.encode("utf-8"))
    cols = read_kaggle_columns(path, rank=False, dtype=np.float64)
    assert [i.decode() for i in cols.ids] == ["b", "a", "c", "d", "e", "é", "f"]
    assert cols.lines.tolist() == [2, 3, 4, 6, 7, 8, 9]
    assert cols.classes[0].tolist()[:3] == [3, 1, 2] and cols.scores[3, 0] == 0.123456789012345678901234567890
    assert cols.scores[1, 1] == 2.5e-7 and cols.classes[2].tolist() == [-1] * cols.classes.shape[1]


def random_table(rng: np.random.Generator, n: int, k: int) -> ens.TopKTable:
    """Rows with ties, tiny and round scores, padding anywhere and empty rows; ids of varied length."""
    classes = rng.integers(0, 4000, size=(n, k), dtype=np.int32)
    classes[rng.random((n, k)) < 0.1] = -1
    classes[: n // 10] = -1
    for row in classes:  # a class listed once per row
        seen = set()
        for j, c in enumerate(row):
            if c in seen:
                row[j] = -1
            seen.add(int(c))
    kind = rng.integers(0, 5, size=(n, k))
    probs = np.select(
        [kind == 0, kind == 1, kind == 2, kind == 3],
        [
            rng.random((n, k)),
            rng.random((n, k)) * 1e-6,
            np.round(rng.random((n, k)), 1),
            rng.choice([0.0, 1.0, 0.5, 0.25, 1e-5, 1e-4, 123.0, 1e9, 1e17, 3e-20], size=(n, k)),
        ],
        rng.random((n, k)) * 10.0 ** rng.integers(-12, 12, size=(n, k)),
    ).astype(np.float32)
    probs[classes < 0] = 0
    ids = np.array([b"v%d" % i + b"x" * int(rng.integers(0, 12)) for i in range(n)])
    return ens.TopKTable("t", ids, classes, probs)


@needs_polars
@pytest.mark.parametrize("names", [None, {0: "Game", 5: 'Car, "red"', 7: "é\n"}])
def test_fast_writers_write_the_bytes_of_the_row_writers(names, tmp_path):
    table = random_table(np.random.default_rng(0), 3000, 12)
    predictions = table.predictions()
    for fmt in FORMATS:
        old, new = tmp_path / f"old{fmt.suffix}", tmp_path / f"new{fmt.suffix}"
        fmt().write(old, predictions, names)
        fmt().write_columns(new, table.columns(), names)
        assert new.read_bytes() == old.read_bytes(), fmt.name
        # and it reads back as the table it came from, ranked
        same_table(ens.read_prediction_file(new), ens.TopKTable.from_predictions("t", predictions))


@needs_polars
def test_polars_reads_what_the_writers_write_without_the_line_parsers(tmp_path):
    """The files zoo writes are the plain spelling: polars reads every block of them (no fallback)."""
    table = random_table(np.random.default_rng(2), 2000, 20)
    KaggleCsvFormat().write_columns(tmp_path / "p.csv", table.columns(), None)
    JsonLinesFormat().write_columns(tmp_path / "p.jsonl", table.columns(), {0: "Game", 3: 'a "b"'})
    csv_block = (tmp_path / "p.csv").read_bytes().split(b"\n", 1)[1]
    assert len(prediction_io.parse_kaggle_block(csv_block).ids) == 2000
    assert len(prediction_io.parse_jsonl_block((tmp_path / "p.jsonl").read_bytes()).ids) == 2000


@needs_polars
def test_jsonl_ids_that_need_escapes_are_escaped_as_json_dumps_does(tmp_path):
    ids = ['q"uote', "back\\slash", "tab\there", "é", "nul\x00inside", "plain"]
    rows = [Prediction(v, [1], [0.5]) for v in ids]
    table = ens.TopKTable.from_predictions("t", rows)
    write_jsonl(tmp_path / "old.jsonl", table.predictions())
    JsonLinesFormat().write_columns(tmp_path / "new.jsonl", table.columns(), None)
    assert (tmp_path / "new.jsonl").read_bytes() == (tmp_path / "old.jsonl").read_bytes()


@needs_polars
def test_float_formatting_matches_python_on_many_values():
    """Every float32 bit pattern class (random bits, NaN and infinities included): polars' text where it
    agrees, Python's elsewhere, gives numpy's float32 text and ``json.dumps`` of the double."""
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    special = np.array([0.0, -0.0, 1e-4, 1e6, 1e16, np.nan, np.inf, -np.inf, 1.0, 123456.0], np.float32)
    values = np.concatenate([bits.view(np.float32), rng.random(100_000, dtype=np.float32), special])
    assert prediction_io._texts(values, double=False).to_list() == [str(v) for v in values]
    assert prediction_io._texts(values, double=True).to_list() == [json.dumps(v) for v in values.tolist()]
    assert prediction_io.float32_texts(values) == [str(v) for v in values]


def test_the_formats_are_columnar():
    assert all(isinstance(fmt(), ColumnarPredictionFormat) for fmt in FORMATS)


def test_kaggle_id_that_cannot_be_written_is_an_error_and_nothing_is_written(tmp_path):
    table = ens.TopKTable.from_predictions("t", [Prediction("a,b", [1], [0.5]), Prediction("c", [1], [0.5])])
    with pytest.raises(ValueError, match="'a,b' cannot be written"):
        KaggleCsvFormat().write_columns(tmp_path / "p.csv", table.columns(), None)
    assert list(tmp_path.iterdir()) == []


BAD_CSV = [
    ("v,1 0.5 x 0.2", "line 3: video 'v': label 'x' (pair 2) is not a non-negative integer"),
    ("v,1 0.5 2 zero", "line 3: video 'v': score 'zero' (pair 2) is not a finite number"),
    ("v,1 0.5 2 1e999", "score '1e999' (pair 2) is not a finite number"),
    ("v,1 nan", "score 'nan' (pair 1) is not a finite number"),
    ("v,1 0.5 2", "line 3: video 'v': 3 tokens after the comma"),
    ("v,1 0.5 1 0.4", "line 3: video 'v': class 1 is listed twice"),
    ("v,1 0.5,2 0.4", "line 3: expected 'VideoId,label score label score ...' (one comma)"),
    ("  ,1 0.5", "line 3: the VideoId is empty"),
    ("v 1 0.5", "line 3: expected 'VideoId,label score label score ...' (one comma), found 0 commas"),
    ("v,-1 0.5", "label '-1' (pair 1) is not a non-negative integer"),
    ("v,99999999999 0.5", "line 3: video 'v': class 99999999999 is out of range"),
    ("a,1 0.5", "line 3: video 'a' is listed again (first on line 2)"),
]


@pytest.mark.parametrize("line,message", BAD_CSV)
def test_malformed_csv_lines_are_errors_naming_file_and_line(line, message, parser, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(f"VideoId,LabelConfidencePairs\na,1 0.5\n{line}\nz,2 0.1\n")
    with pytest.raises(DataError) as err:
        ens.read_prediction_file(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


BAD_JSONL = [
    ('{"id": "v", "classes": [1, "x"], "scores": [0.5, 0.2]}', "'classes' must be a list of non-negative"),
    ('{"id": "v", "classes": [1, 2], "scores": [0.5, "0.2"]}', "'scores' must be a list of finite numbers"),
    ('{"id": "v", "classes": [1, 2], "scores": [0.5]}', "line 3: video 'v': 2 classes but 1 scores"),
    ('{"id": "v", "classes": [1], "scores": [Infinity]}', "'scores' must be a list of finite numbers"),
    ('{"id": "v", "classes": [1], "scores": [0.5]', "line 3: not a JSON object"),
    ('{"id": "", "classes": [], "scores": []}', "line 3: 'id' must be a non-empty string"),
    ('{"id": "v", "classes": [1, 1], "scores": [0.5, 0.4]}', "line 3: video 'v': class 1 is listed twice"),
    ('{"id": "a", "classes": [1], "scores": [0.5]}', "line 3: video 'a' is listed again (first on line 2)"),
]


@pytest.mark.parametrize("line,message", BAD_JSONL)
def test_malformed_jsonl_lines_are_errors_naming_file_and_line(line, message, parser, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"id": "first", "classes": [], "scores": []}\n{"id": "a", "classes": [1], "scores": [0.5]}\n'
        f"{line}\n"
    )
    with pytest.raises(DataError) as err:
        ens.read_prediction_file(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


def test_class_out_of_range_names_the_line(parser, tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("VideoId,LabelConfidencePairs\na,1 0.5\nb,3862 0.5 2 0.1\n")
    with pytest.raises(
        DataError, match=r"p.csv: line 3: video 'b': class 3862 is out of range.*3862 classes"
    ):
        ens.read_prediction_file(path, num_classes=3862)


def test_invalid_utf8_and_bad_header_are_errors(parser, tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes(b"VideoId,LabelConfidencePairs\na,1 0.5\nb\xff,1 0.5\n")
    with pytest.raises(DataError, match=r"p.csv: line 3: not valid UTF-8"):
        ens.read_prediction_file(path)
    path.write_bytes(b"Id,Pairs\na,1 0.5\n")
    with pytest.raises(DataError, match=r"p.csv: line 1: expected the header"):
        ens.read_prediction_file(path)
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfVideoId,LabelConfidencePairs\nv1,1 0.5")
    assert read_kaggle_columns(bom).ids.tolist() == [b"v1"]


def test_empty_files_give_empty_columns(parser, tmp_path):
    (tmp_path / "p.csv").write_text("VideoId,LabelConfidencePairs\n")
    (tmp_path / "p.jsonl").write_text("")
    for cols in (read_kaggle_columns(tmp_path / "p.csv"), read_jsonl_columns(tmp_path / "p.jsonl")):
        assert len(cols) == 0 and cols.classes.shape == (0, 1)


def test_written_files_are_atomic(tmp_path, monkeypatch):
    table = random_table(np.random.default_rng(1), 50, 4)
    path = tmp_path / "p.csv"
    path.write_text("before")

    def broken(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(prediction_io, "_joined", broken)
    with pytest.raises(RuntimeError):
        KaggleCsvFormat().write_columns(path, table.columns(), None)
    assert path.read_text() == "before" and [p.name for p in tmp_path.iterdir()] == ["p.csv"]


def test_columns_of_arrays_name_rows_not_lines():
    cols = PredictionColumns(np.array([b"a", b"a"]), np.zeros((2, 1), np.int32), np.zeros((2, 1), np.float32))
    with pytest.raises(DataError, match="x: row 2: video 'a' is listed again .first on row 1."):
        cols.check_unique("x")


# -- property test: any text reads the same through polars and the Python line parsers -----------------

FUZZ = settings(
    max_examples=int(os.environ.get("ZOO_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
PIECES = ["v1", "v2", ",", " ", "  ", "\t", "\r\n", "\n", "\r", "0", "7", "12", "0.5", "1e-3", "-1", "x", "é",
          ".", "e5", "_", "nan", "1e999", "\x0c", "\x1c", '"', "[", "]", "{", "}", ":", '"id"', '"classes"',
          '"scores"', '"names"', "\\", "\xa0", "00", "+", "99999999999"]  # fmt: skip
SEED = {
    ".csv": "VideoId,LabelConfidencePairs\nv1,3 0.9 7 0.25\nv2,\nv3,0 1e-3\n",
    ".jsonl": '{"id": "v1", "classes": [3, 7], "scores": [0.9, 0.25]}\n{"id": "v2", "classes": [], "scores": []}\n',
}


@st.composite
def prediction_text(draw, suffix: str) -> str:
    text = SEED[suffix]
    for _ in range(draw(st.integers(0, 5))):
        pos = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 3))
        text = text[:pos] + "".join(draw(st.lists(st.sampled_from(PIECES), max_size=4))) + text[pos + cut :]
    return text


def outcome(path: Path, fast: bool):
    saved = prediction_io.FAST
    prediction_io.FAST = saved if fast else None
    try:
        fmt = KaggleCsvFormat if path.suffix == ".csv" else JsonLinesFormat
        cols = fmt().read_columns(path, rank=False, dtype=np.float64)
        return cols.ids.tolist(), cols.classes.tolist(), cols.scores.tolist(), cols.lines.tolist()
    except DataError as exc:
        return str(exc)
    finally:
        prediction_io.FAST = saved


@needs_polars
@FUZZ
@given(st.sampled_from([".csv", ".jsonl"]).flatmap(lambda s: st.tuples(st.just(s), prediction_text(s))))
def test_polars_agrees_with_the_python_line_parsers(case):
    suffix, text = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, f"p{suffix}")
        path.write_bytes(text.encode("utf-8"))
        assert outcome(path, True) == outcome(path, False)


@needs_polars
@FUZZ
@given(st.sampled_from([".csv", ".jsonl"]).flatmap(lambda s: st.tuples(st.just(s), prediction_text(s))))
def test_column_reader_agrees_with_the_row_reader(case):
    """Where the row reader (format.read) accepts a file, the column reader gives the same rows; where it
    fails, the column reader fails too (a DataError)."""
    suffix, text = case
    fmt = KaggleCsvFormat if suffix == ".csv" else JsonLinesFormat
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, f"p{suffix}")
        path.write_bytes(text.encode("utf-8"))
        try:
            rows = list(fmt().read(path))
        except DataError:
            with pytest.raises(DataError):
                fmt().read_columns(path)
            return
        try:
            cols = fmt().read_columns(path, rank=False, dtype=np.float64)
        except DataError as exc:  # a class beyond int32 is an error only here
            assert "out of range" in str(exc)
            return
        back = [
            (vid.decode(), c[c >= 0].tolist(), s[c >= 0].tolist())
            for vid, c, s in zip(cols.ids, cols.classes, cols.scores)
        ]
        assert back == [(r.id, r.classes, r.scores) for r in rows]


@pytest.mark.slow
@needs_polars
def test_number_parsing_matches_float_on_many_spellings(tmp_path):
    rng = np.random.default_rng(5)
    f32 = rng.integers(0, 2**32, 100_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    doubles = f32[np.isfinite(f32)].astype(float).tolist() + rng.random(50_000).tolist()
    tokens = [f"{x:.9g}" for x in doubles] + [repr(x) for x in doubles]
    tokens += [f"{x:.{p}e}" for x, p in zip((rng.random(20_000) * 10.0 ** rng.integers(-30, 30, 20_000)).tolist(),
                                             rng.integers(0, 25, 20_000).tolist())]  # fmt: skip
    tokens += ["0", "-0", "+0.0", "00012.5000", ".5", "5.", "1e22", "1e23", "9007199254740993", "4.9e-324"]
    tokens += ["123456789012345678901234567890e-20", "0.000000000000000000000000001", "-1E-7", "2e-400"]
    path = tmp_path / "p.csv"
    plain = [t for t in tokens if t[0] not in "+-"]  # a signed token sends its block to Python
    for part in (plain, tokens):
        path.write_text(
            "VideoId,LabelConfidencePairs\n" + "".join(f"v{i},1 {t}\n" for i, t in enumerate(part))
        )
        block = path.read_bytes().split(b"\n", 1)[1]
        assert (prediction_io.parse_kaggle_block(block) is not None) == (part is plain)
        got = read_kaggle_columns(path, rank=False, dtype=np.float64).scores[:, 0]
        want = np.array([float(t) for t in part])
        assert got.tolist() == want.tolist() and np.array_equal(np.signbit(got), np.signbit(want))


@pytest.mark.parametrize("fast", [True, False])
def test_a_row_listing_a_huge_number_of_classes_stops_at_the_first_out_of_range_one(
    tmp_path, fast, monkeypatch
):
    """50 rows of 20 classes and one listing 300,000: with the class count known, reading stops at that row
    (before the [rows, classes] arrays, 50 x 300,000, are made)."""
    import tracemalloc

    if not fast:
        monkeypatch.setattr(prediction_io, "FAST", None)
    path = tmp_path / "p.csv"
    rows = ["VideoId,LabelConfidencePairs"]
    rows += [f"v{i}," + " ".join(f"{c} 0.5" for c in range(20)) for i in range(50)]
    rows.append("huge," + " ".join(f"{c} 0.5" for c in range(300_000)))
    path.write_text("\n".join(rows) + "\n")
    tracemalloc.start()
    try:
        with pytest.raises(
            DataError, match=r"line 52: video 'huge': class 20 is out of range; the dataset has 20"
        ):
            read_kaggle_columns(path, num_classes=20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100e6, peak  # the padded arrays alone would take 50 x 300,000 x 12 = 180 MB
