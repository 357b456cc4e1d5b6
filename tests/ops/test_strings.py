"""StringConcat, StringNormalizer, StringSplit, RegexFullMatch, TfIdfVectorizer (refquant/ops/strings.py,
spec/ops/strings.md): the ONNX node cases, hand derivations, onnx.reference where ONNX and it agree, string
feeds, and the refusals."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
from onnx import TensorProto as T

import refquant
from refquant.errors import AttributeValueError, DTypeError, FeedError, ShapeError

from ..helpers import node_case_runs, node_cases, single_node_model
from .helpers import assert_same_bits, run_reference


def _at_opset_10(case):
    """TfIdfVectorizer's cases import opset 9; its only schema (9) is the one at 10."""
    if case.model.opset_import[0].version >= 10:
        return case
    raised = copy.deepcopy(case.model)
    raised.opset_import[0].version = 10
    return dataclasses.replace(case, model=raised)


STRING_CASES = [_at_opset_10(c) for c in node_cases(r"^test_(string_concat|string_split|strnormalizer|regex_full_match|tfidfvectorizer)")]


def test_every_node_case_is_collected():
    counts = {}
    for case in STRING_CASES:
        op = case.model.graph.node[0].op_type
        counts[op] = counts.get(op, 0) + 1
    assert counts == {"StringConcat": 5, "StringNormalizer": 6, "StringSplit": 6, "RegexFullMatch": 3,
                      "TfIdfVectorizer": 7}


@pytest.mark.parametrize("case", STRING_CASES, ids=lambda c: c.name)
def test_node_case(case):
    for outputs, expected in node_case_runs(case):
        assert len(outputs) == len(expected)
        for spec, got, want in zip(case.model.graph.output, outputs, expected):
            assert_same_bits(got, want, f"{case.name} {spec.name}")


def _strings(*values, shape=None):
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out.reshape(shape or (len(values),))


def _run(op, inputs, outputs, attrs=None, opset=20):
    model = single_node_model(op, inputs, outputs, opset=opset, attrs=attrs)
    return refquant.Session(model).run(None, inputs)


# -- StringConcat ------------------------------------------------------------------------------------------


def test_string_concat_broadcasts_and_accepts_numpy_str_feeds():
    x = _strings("a", "é", "", shape=(3, 1))
    (z,) = _run("StringConcat", {"x": x, "y": _strings("1", "ü")}, {"z": T.STRING})
    assert z.dtype == object and z.shape == (3, 2)
    assert z.tolist() == [["a1", "aü"], ["é1", "éü"], ["1", "ü"]]
    # numpy's fixed-width str_ arrays are converted to the object form (spec/model.md, Feeds)
    model = single_node_model("StringConcat", {"x": _strings("a"), "y": _strings("b")}, {"z": T.STRING}, opset=20)
    (z,) = refquant.Session(model).run(None, {"x": np.array(["ab"]), "y": np.array(["c"])})
    assert z.dtype == object and z.tolist() == ["abc"]
    with pytest.raises(FeedError, match="input 'x' has dtype int64"):
        refquant.Session(model).run(None, {"x": np.array([1]), "y": np.array(["c"])})


def test_string_concat_refuses_non_strings_naming_the_node():
    with pytest.raises(DTypeError, match=r"StringConcat '#0': X holds a bytes \(b'a'\)"):
        _run("StringConcat", {"x": _strings(b"a"), "y": _strings("b")}, {"z": T.STRING})
    with pytest.raises(ShapeError, match=r"StringConcat '#0': X \(2,\) and Y \(3,\) do not broadcast"):
        _run("StringConcat", {"x": _strings("a", "b"), "y": _strings("a", "b", "c")}, {"z": T.STRING})


def test_string_initializers_and_outputs():
    model = single_node_model("StringConcat", {"x": _strings("a"), "y": _strings("-", "+")}, {"z": T.STRING},
                              opset=20, initializers={"y": _strings("-", "+")})
    (z,) = refquant.Session(model).run(None, {"x": _strings("q")})
    assert z.tolist() == ["q-", "q+"]


# -- StringNormalizer --------------------------------------------------------------------------------------


def test_string_normalizer_removes_whole_elements_then_changes_case():
    x = _strings("Monday", "tuesday", "MONDAY", "monday and friday", "")
    (y,) = _run("StringNormalizer", {"x": x}, {"y": T.STRING}, opset=10,
                attrs={"stopwords": ["monday"], "case_change_action": "UPPER"})
    # case-insensitive by default; "monday and friday" is not the stop word; "" is kept (ONNX drops stop words only)
    assert y.tolist() == ["TUESDAY", "MONDAY AND FRIDAY", ""]
    (y,) = _run("StringNormalizer", {"x": x[None]}, {"y": T.STRING}, opset=10,
                attrs={"stopwords": ["monday"], "is_case_sensitive": 1, "case_change_action": "LOWER"})
    assert y.shape == (1, 5) and y.tolist() == [["monday", "tuesday", "monday", "monday and friday", ""]]  # none equals
    # accents are not stripped (onnx.reference strips them: spec/ops/strings.md)
    (y,) = _run("StringNormalizer", {"x": _strings("Café")}, {"y": T.STRING}, opset=10)
    assert y.tolist() == ["Café"]
    (y,) = _run("StringNormalizer", {"x": _strings("a", "A", shape=(1, 2))}, {"y": T.STRING}, opset=10,
                attrs={"stopwords": ["a"]})
    assert y.shape == (1, 1) and y.tolist() == [[""]]


def test_string_normalizer_refusals_name_the_node():
    with pytest.raises(ShapeError, match=r"StringNormalizer '#0': X must be \[C\] or \[1, C\], got shape \[2, 2\]"):
        _run("StringNormalizer", {"x": _strings("a", "b", "c", "d", shape=(2, 2))}, {"y": T.STRING}, opset=10)
    with pytest.raises(AttributeValueError, match="StringNormalizer '#0': case_change_action must be one of"):
        _run("StringNormalizer", {"x": _strings("a")}, {"y": T.STRING}, opset=10, attrs={"case_change_action": "TITLE"})


# -- StringSplit -------------------------------------------------------------------------------------------


def test_string_split_by_hand():
    x = _strings("a,,b", "", "c", shape=(3,))
    y, z = _run("StringSplit", {"x": x}, {"y": T.STRING, "z": T.INT64}, attrs={"delimiter": ","})
    assert y.tolist() == [["a", "", "b"], ["", "", ""], ["c", "", ""]] and z.tolist() == [3, 1, 1]
    y, z = _run("StringSplit", {"x": _strings("  a  b c ", "   ")}, {"y": T.STRING, "z": T.INT64},
                attrs={"maxsplit": 1})
    assert y.tolist() == [["a", "b c "], ["", ""]] and z.tolist() == [2, 0]


def test_string_split_matches_onnx_reference():
    x = _strings("one two  three", "x", "a b c d e", " lead", shape=(2, 2))
    for attrs in ({}, {"delimiter": " "}, {"delimiter": " ", "maxsplit": 2}, {"maxsplit": 0}):
        got = _run("StringSplit", {"x": x}, {"y": T.STRING, "z": T.INT64}, attrs=attrs)
        want = run_reference("StringSplit", {"x": x}, [object, np.int64], opset=20, attrs=attrs)
        for g, w in zip(got, want, strict=True):
            assert_same_bits(g, w.astype(g.dtype) if w.dtype != g.dtype else w, str(attrs))


def test_string_split_refuses_a_negative_maxsplit():
    with pytest.raises(AttributeValueError, match="StringSplit '#0': maxsplit must be >= 0, got -2"):
        _run("StringSplit", {"x": _strings("a b")}, {"y": T.STRING, "z": T.INT64}, attrs={"maxsplit": -2})


# -- RegexFullMatch ----------------------------------------------------------------------------------------


def test_regex_full_match_is_a_whole_string_match_with_ascii_classes():
    x = _strings("abc123", "abc", "123abc", "ab\u00e9", "ab_", shape=(5,))
    (y,) = _run("RegexFullMatch", {"x": x}, {"y": T.BOOL}, attrs={"pattern": "[a-z]+\\d*"})
    assert y.tolist() == [True, True, False, False, False]
    # RE2's \w is ASCII: "é" is not a word character (Python's re without re.ASCII says it is)
    (y,) = _run("RegexFullMatch", {"x": x}, {"y": T.BOOL}, attrs={"pattern": "\\w+"})
    assert y.tolist() == [True, True, True, False, True]
    (y,) = _run("RegexFullMatch", {"x": _strings("ab", "abab", "a")}, {"y": T.BOOL}, attrs={"pattern": "(a|ab)(b|)"})
    assert y.tolist() == [True, False, True]


@pytest.mark.parametrize("pattern, match", [
    ("(a)\\1", "back-reference"),
    ("a(?=b)", "look-around"),
    ("(?<!a)b", "look-around"),
    ("(?>a)", "atomic group"),
    ("a*+", "possessive quantifier"),
    ("[[:alpha:]]+", "POSIX class"),
    ("\\pL", "not a regular expression refquant runs"),
    ("(", "not a regular expression refquant runs"),
])
def test_regex_full_match_refuses_what_re2_does_not_mean(pattern, match):
    with pytest.raises(AttributeValueError, match=f"RegexFullMatch '#0': pattern .* {match}"):
        _run("RegexFullMatch", {"x": _strings("a")}, {"y": T.BOOL}, attrs={"pattern": pattern})


# -- TfIdfVectorizer ---------------------------------------------------------------------------------------


def _tfidf(x, **attrs):
    base = {"min_gram_length": 1, "max_gram_length": 2, "max_skip_count": 1, "mode": "TF"}
    (y,) = _run("TfIdfVectorizer", {"x": x}, {"y": T.FLOAT}, attrs={**base, **attrs}, opset=10)
    return y


def test_tfidf_by_hand():
    # pool: 1-grams "a", "b"; 2-grams ("a", "b"), ("b", "a"); output coordinates reversed
    pool = {"pool_strings": ["a", "b", "a", "b", "b", "a"], "ngram_counts": [0, 2], "ngram_indexes": [3, 2, 1, 0]}
    x = _strings("a", "b", "a", "c", "b")
    # 1-grams: a 2, b 2; 2-grams at distance 1: ab, ba, ac, cb -> ab 1, ba 1; distance 2: aa, bc, ab -> ab 1
    y = _tfidf(x, **pool)
    assert y.dtype == np.float32 and y.tolist() == [1, 2, 2, 2]
    y = _tfidf(x, **pool, mode="IDF", weights=[0.5, 0.25, 2.0, 3.0])
    assert y.tolist() == [3.0, 2.0, 0.25, 0.5]  # weights follow the pool n-gram (ONNX's text)
    y = _tfidf(x, **pool, mode="TFIDF", weights=[0.5, 0.25, 2.0, 3.0])
    assert y.tolist() == [3.0, 4.0, 0.5, 1.0]
    y = _tfidf(x, **pool, max_skip_count=0)
    assert y.tolist() == [1, 1, 2, 2]
    ints = _tfidf(np.array([[1, 2, 1], [2, 2, 2]], np.int64), pool_int64s=[1, 2, 1, 2, 2, 1], ngram_counts=[0, 2],
                  ngram_indexes=[0, 1, 2, 3], max_skip_count=0)
    assert ints.shape == (2, 4) and ints.tolist() == [[2, 1, 1, 1], [0, 3, 0, 0]]


def test_tfidf_matches_onnx_reference_with_identity_indexes():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 4, size=(3, 9)).astype(np.int64)
    attrs = {"min_gram_length": 1, "max_gram_length": 3, "max_skip_count": 2, "mode": "TFIDF",
             "pool_int64s": [0, 1, 3, 0, 1, 1, 2, 3, 0, 0, 1, 2, 3, 3, 1], "ngram_counts": [0, 3, 9],
             "ngram_indexes": list(range(8)), "weights": [0.5, 1.5, 2.0, 0.25, 3.0, 1.0, 0.75, 1.25]}
    (got,) = _run("TfIdfVectorizer", {"x": x}, {"y": T.FLOAT}, attrs=attrs, opset=10)
    (want,) = run_reference("TfIdfVectorizer", {"x": x}, [np.float32], opset=10, attrs=attrs)
    assert got.any()
    assert_same_bits(got, want)


def test_tfidf_refusals_name_the_node():
    x = _strings("a")
    with pytest.raises(AttributeValueError, match="TfIdfVectorizer '#0': exactly one of pool_strings and pool_int64s"):
        _tfidf(x, ngram_counts=[0], ngram_indexes=[0])
    with pytest.raises(AttributeValueError, match="ngram_indexes has 1 entries, the pool holds 2 n-grams"):
        _tfidf(x, pool_strings=["a", "b"], ngram_counts=[0], ngram_indexes=[0])
    with pytest.raises(DTypeError, match=r"TfIdfVectorizer '#0': X \(pool_int64s is set\) has type"):
        _tfidf(x, pool_int64s=[1], ngram_counts=[0], ngram_indexes=[0])


@pytest.mark.parametrize("op", ["StringConcat", "StringNormalizer", "StringSplit", "RegexFullMatch", "TfIdfVectorizer"])
def test_versions_are_the_schema_versions(op):
    from .helpers import assert_versions_are_the_schema_versions_from_opset_10

    assert_versions_are_the_schema_versions_from_opset_10(op)


def test_string_split_estimate_counts_the_substrings_before_allocating():
    from refquant.errors import ResourceLimitError

    x = _strings("a b c d", "e")
    model = single_node_model("StringSplit", {"x": x}, {"y": T.STRING, "z": T.INT64}, opset=20)
    # [2, 4] substrings and [2] counts at 8 bytes each: 80 bytes
    with pytest.raises(ResourceLimitError, match=r"StringSplit '#0': its tensors \(substrings \[2, 4\], counts \[2\]\)"):
        refquant.Session(model, limits=refquant.Limits(max_memory=79)).run(None, {"x": x})
    y, _ = refquant.Session(model, limits=refquant.Limits(max_memory=80)).run(None, {"x": x})
    assert y.shape == (2, 4)


def test_concat_and_regex_match_onnx_reference_on_random_strings():
    rng = np.random.default_rng(11)
    alphabet = list("ab.-@xyz0")
    x = _strings(*["".join(rng.choice(alphabet, rng.integers(0, 6))) for _ in range(24)], shape=(4, 6))
    y = _strings(*["".join(rng.choice(alphabet, rng.integers(0, 3))) for _ in range(6)], shape=(6,))
    (got,) = _run("StringConcat", {"x": x, "y": y}, {"z": T.STRING})
    (want,) = run_reference("StringConcat", {"x": x, "y": y}, [object], opset=20)
    assert_same_bits(got, want)
    for pattern in ("[a-z]*", "(ab|x)+\\.?[0-9]", "[^@]+@[a-z]+", ".*\\.-.*"):
        (got,) = _run("RegexFullMatch", {"x": x}, {"y": T.BOOL}, attrs={"pattern": pattern})
        (want,) = run_reference("RegexFullMatch", {"x": x}, [np.bool_], opset=20, attrs={"pattern": pattern})
        assert_same_bits(got, want, pattern)
