"""ai.onnx's string ops (spec/ops/strings.md): StringConcat, StringNormalizer, StringSplit, RegexFullMatch and
TfIdfVectorizer.

A string tensor is a numpy object array whose elements are Python ``str`` (what onnx.numpy_helper reads from a
TensorProto of type STRING, and what onnx.reference uses); a feed of numpy's fixed-width ``str_`` arrays is
converted by the session (spec/model.md). An element that is not a ``str`` is refused (DTypeError).
"""

from __future__ import annotations

import re

import numpy as np
from onnx import TensorProto as T

from ..checks import require_dtype
from ..errors import AttributeValueError, DTypeError, ShapeError
from ..node import Node
from ..registry import register

__all__ = ["string_concat", "string_normalizer", "string_split", "regex_full_match", "tfidf_vectorizer",
           "compile_re2", "tfidf_output_size", "split_counts"]


def _strings(x, what: str) -> np.ndarray:
    """``x`` as a string tensor: an object array of str (DTypeError otherwise)."""
    x = np.asarray(x)
    if x.dtype != object:
        raise DTypeError(f"{what} has type {x.dtype}; it must be a string tensor")
    bad = next((v for v in x.flat if not isinstance(v, str)), None)
    if bad is not None:
        raise DTypeError(f"{what} holds a {type(bad).__name__} ({bad!r}); a string tensor holds str elements")
    return x


def _object_array(values, shape) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out.reshape(shape)


# -- StringConcat ------------------------------------------------------------------------------------------


@register("StringConcat", since=(20,))
def string_concat(node: Node, x, y):
    """X + Y element by element, with multidirectional broadcasting."""
    x, y = _strings(x, "X"), _strings(y, "Y")
    try:
        shape = np.broadcast_shapes(x.shape, y.shape)
    except ValueError:
        raise ShapeError(f"X {x.shape} and Y {y.shape} do not broadcast") from None
    a, b = np.broadcast_to(x, shape).ravel(), np.broadcast_to(y, shape).ravel()
    return (_object_array([p + q for p, q in zip(a, b)], shape),)


# -- StringNormalizer --------------------------------------------------------------------------------------

CASE_ACTIONS = ("NONE", "LOWER", "UPPER")


@register("StringNormalizer", since=(10,))
def string_normalizer(node: Node, x):
    """Drop the elements equal to a stop word (compared after str.lower() of both when is_case_sensitive is 0),
    then change the case of the others (str.lower / str.upper: Unicode's default case mappings; ``locale`` is
    read but does not change them). [C] gives [C'], [1, C] gives [1, C']; when every element is dropped, [1]
    or [1, 1] holding "" (spec/ops/strings.md)."""
    x = _strings(x, "X")
    if not (x.ndim == 1 or (x.ndim == 2 and x.shape[0] == 1)):
        raise ShapeError(f"X must be [C] or [1, C], got shape {list(x.shape)}")
    action = node.attr("case_change_action", "NONE", str)
    if action not in CASE_ACTIONS:
        raise AttributeValueError(f"case_change_action must be one of {', '.join(CASE_ACTIONS)}, got {action!r}")
    sensitive = bool(node.attr("is_case_sensitive", 0, int))
    node.attr("locale", "", str)
    stopwords = node.attr("stopwords", [], list)
    if sensitive:
        kept = [s for s in x.ravel() if s not in set(stopwords)]
    else:
        stops = {w.lower() for w in stopwords}
        kept = [s for s in x.ravel() if s.lower() not in stops]
    if action == "LOWER":
        kept = [s.lower() for s in kept]
    elif action == "UPPER":
        kept = [s.upper() for s in kept]
    if not kept:
        kept = [""]
    return (_object_array(kept, (len(kept),) if x.ndim == 1 else (1, len(kept))),)


# -- StringSplit -------------------------------------------------------------------------------------------


def split_counts(node: Node, x) -> tuple[list[list[str]], int]:
    """The substrings of each element of X (flattened) and the largest count."""
    x = _strings(x, "X")
    delimiter = node.attr("delimiter", "", str) or None
    maxsplit = node.attr("maxsplit", None, int)
    if maxsplit is not None and maxsplit < 0:
        raise AttributeValueError(f"maxsplit must be >= 0, got {maxsplit}")
    parts = [s.split(delimiter, -1 if maxsplit is None else maxsplit) for s in x.ravel()]
    return parts, max((len(p) for p in parts), default=0)


@register("StringSplit", since=(20,))
def string_split(node: Node, x):
    """Python's str.split: on ``delimiter`` (consecutive delimiters delimit empty strings), or, when it is unset
    or "", on runs of whitespace with leading and trailing whitespace dropped; at most ``maxsplit`` splits.
    Y: X's shape plus one axis of the largest count, shorter lists padded with ""; Z (int64): each count."""
    parts, width = split_counts(node, x)
    flat = [p + [""] * (width - len(p)) for p in parts]
    y = _object_array([s for row in flat for s in row], x.shape + (width,))
    z = np.array([len(p) for p in parts], np.int64).reshape(x.shape)
    return y, z


# -- RegexFullMatch ----------------------------------------------------------------------------------------

#: POSIX classes are RE2 syntax inside a bracket expression; Python's re reads "[[:alpha:]]" as a set of
#: characters followed by "]": refused rather than run with another meaning
_POSIX_CLASS = re.compile(r"\[:\^?[a-z]+:\]")


def compile_re2(pattern: str) -> re.Pattern:
    """``pattern`` compiled by Python's re with re.ASCII (RE2's \\w, \\d, \\s and \\b are ASCII), refused when it
    uses what RE2 does not have (back-references, look-around, atomic groups, possessive quantifiers,
    conditionals) or RE2 syntax Python reads otherwise (POSIX classes) or not at all (\\p, \\C, \\Q, \\z)."""
    if _POSIX_CLASS.search(pattern):
        raise AttributeValueError(f"pattern {pattern!r} uses a POSIX class ([:name:]), which refquant does not run")
    try:
        compiled = re.compile(pattern, re.ASCII)
    except re.error as exc:
        raise AttributeValueError(f"pattern {pattern!r} is not a regular expression refquant runs: {exc}") from None
    from re import _constants as c, _parser  # the stdlib's own parse tree (Python 3.11+)

    forbidden = {c.GROUPREF: "a back-reference", c.GROUPREF_EXISTS: "a conditional group", c.ASSERT: "a look-around",
                 c.ASSERT_NOT: "a look-around", c.ATOMIC_GROUP: "an atomic group",
                 c.POSSESSIVE_REPEAT: "a possessive quantifier"}

    def walk(items):
        for op, arg in items:
            if op in forbidden:
                raise AttributeValueError(f"pattern {pattern!r} uses {forbidden[op]}, which RE2 syntax does not have")
            for sub in arg if isinstance(arg, (tuple, list)) else ():
                if isinstance(sub, _parser.SubPattern):
                    walk(sub)
                elif isinstance(sub, (tuple, list)):
                    for inner in sub:
                        if isinstance(inner, _parser.SubPattern):
                            walk(inner)

    walk(_parser.parse(pattern, re.ASCII))
    return compiled


@register("RegexFullMatch", since=(20,))
def regex_full_match(node: Node, x):
    """True where the whole element matches ``pattern`` (RE2 syntax, run by Python's re: compile_re2)."""
    x = _strings(x, "X")
    if not node.has("pattern"):
        raise AttributeValueError("required attribute 'pattern' is missing")
    regex = node.cache.get("regex")
    if regex is None:
        regex = node.cache["regex"] = compile_re2(node.attr("pattern", kind=str))
    return (np.array([regex.fullmatch(s) is not None for s in x.ravel()], np.bool_).reshape(x.shape),)


# -- TfIdfVectorizer ---------------------------------------------------------------------------------------

MODES = ("TF", "IDF", "TFIDF")


def tfidf_output_size(node: Node) -> int:
    indexes = node.attr_ints("ngram_indexes")
    if not indexes or min(indexes) < 0:
        raise AttributeValueError(f"ngram_indexes must be a non-empty list of indexes >= 0, got {indexes}")
    return max(indexes) + 1


def _tfidf_pool(node: Node):
    """({n-gram tuple: pool index k}, ngram_indexes, weights or None, is a string pool), checked."""
    strings, ints = node.has("pool_strings"), node.has("pool_int64s")
    if strings == ints:
        raise AttributeValueError("exactly one of pool_strings and pool_int64s must be set")
    pool = node.attr("pool_strings", kind=list) if strings else node.attr_ints("pool_int64s")
    counts = node.attr_ints("ngram_counts")
    indexes = node.attr_ints("ngram_indexes")
    tfidf_output_size(node)
    lo, hi = node.attr("min_gram_length", kind=int), node.attr("max_gram_length", kind=int)
    skip = node.attr("max_skip_count", kind=int)
    if not 1 <= lo <= hi or skip < 0:
        raise AttributeValueError(f"need 1 <= min_gram_length ({lo}) <= max_gram_length ({hi}), max_skip_count "
                                  f"({skip}) >= 0")
    if any(b < a for a, b in zip(counts, counts[1:])) or (counts and (counts[0] != 0 or counts[-1] > len(pool))):
        raise AttributeValueError(f"ngram_counts {counts} must start at 0 and rise within the pool's {len(pool)} items")
    grams: dict[tuple, int] = {}
    k = 0
    for n, start in enumerate(counts, start=1):
        end = counts[n] if n < len(counts) else len(pool)
        if (end - start) % n:
            raise AttributeValueError(f"the pool's {n}-grams (items {start}..{end - 1}) are not a whole number of {n}-grams")
        for first in range(start, end, n):
            if lo <= n <= hi:
                grams[tuple(pool[first:first + n])] = k
            k += 1
    if k != len(indexes):
        raise AttributeValueError(f"ngram_indexes has {len(indexes)} entries, the pool holds {k} n-grams")
    weights = node.attr("weights", None, list)
    if weights is not None and len(weights) != len(indexes):
        raise AttributeValueError(f"weights has {len(weights)} entries, ngram_indexes {len(indexes)}")
    return grams, indexes, weights, strings


@register("TfIdfVectorizer", since=(9,))
def tfidf_vectorizer(node: Node, x):
    """Counts of the pool's n-grams in each row of X (spec/ops/strings.md): every n-gram of n items in
    [min_gram_length, max_gram_length] taken d = 1 .. max_skip_count + 1 items apart (1-grams once), counted
    for the pool n-gram k it equals at output coordinate ngram_indexes[k]. TF: the count; IDF: weights[k] where
    the count is > 0 (1 without weights); TFIDF: weights[k] times the count. float32 output, rounded once."""
    mode = node.attr("mode", kind=str)
    if mode not in MODES:
        raise AttributeValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    grams, indexes, weights, string_pool = _tfidf_pool(node)
    if string_pool:
        _strings(x, "X (pool_strings is set)")
    else:
        require_dtype(x, (T.INT32, T.INT64), "X (pool_int64s is set)")
    if x.ndim not in (1, 2) or (x.ndim == 2 and x.shape[0] < 1):
        raise ShapeError(f"X must be [C] or [N, C] with N >= 1, got shape {list(x.shape)}")
    lo, hi = node.attr("min_gram_length", kind=int), node.attr("max_gram_length", kind=int)
    skip = node.attr("max_skip_count", kind=int)
    rows = x.reshape(-1, x.shape[-1]).tolist()
    size = tfidf_output_size(node)
    counts = np.zeros((len(rows), len(indexes)), np.int64)
    for r, row in enumerate(rows):
        for n in range(lo, hi + 1):
            for distance in range(1, (skip + 1 if n > 1 else 1) + 1):
                for start in range(len(row) - distance * (n - 1)):
                    k = grams.get(tuple(row[start:start + distance * (n - 1) + 1:distance]))
                    if k is not None:
                        counts[r, k] += 1
    if mode == "TF":
        terms = counts.astype(np.float64)
    else:
        w = np.ones(len(indexes)) if weights is None else np.asarray(weights, np.float64)
        terms = w * (np.minimum(counts, 1) if mode == "IDF" else counts)
    y = np.zeros((len(rows), size), np.float64)
    np.add.at(y, (slice(None), np.asarray(indexes)), terms)
    y = y.astype(np.float32)
    return (y.reshape(size) if x.ndim == 1 else y,)
