"""Genotype value: validation, reference text form, parsing without eval, JSON, published cells."""

import json
import pickle

import pytest

from search_spaces.darts.genotype import Genotype, parse_genotype
from search_spaces.darts.ops import OPS
from search_spaces.darts.genotypes import GENOTYPES, PUBLISHED_ERROR, get_genotype

# Pasted literally from the official genotypes.py files (DARTS cnn/genotypes.py as copied into
# PC-DARTS/P-DARTS genotypes.py; PC-DARTS genotypes.py; P-DARTS genotypes.py, its spacing kept).
DARTS_V1_TEXT = "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])"  # noqa: E501
DARTS_V2_TEXT = "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"  # noqa: E501
PC_DARTS_TEXT = "Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 0), ('dil_conv_3x3', 1), ('sep_conv_5x5', 0), ('sep_conv_3x3', 1), ('avg_pool_3x3', 0), ('dil_conv_3x3', 1)], normal_concat=range(2, 6), reduce=[('sep_conv_5x5', 1), ('max_pool_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_5x5', 2), ('sep_conv_3x3', 0), ('sep_conv_3x3', 3), ('sep_conv_3x3', 1), ('sep_conv_3x3', 2)], reduce_concat=range(2, 6))"  # noqa: E501
PC_DARTS_IMAGE_TEXT = "Genotype(normal=[('skip_connect', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 0), ('skip_connect', 1), ('sep_conv_3x3', 1), ('sep_conv_3x3', 3), ('sep_conv_3x3', 1), ('dil_conv_5x5', 4)], normal_concat=range(2, 6), reduce=[('sep_conv_3x3', 0), ('skip_connect', 1), ('dil_conv_5x5', 2), ('max_pool_3x3', 1), ('sep_conv_3x3', 2), ('sep_conv_3x3', 1), ('sep_conv_5x5', 0), ('sep_conv_3x3', 3)], reduce_concat=range(2, 6))"  # noqa: E501
PDARTS_TEXT = "Genotype(normal=[('skip_connect', 0), ('dil_conv_3x3', 1), ('skip_connect', 0),('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('sep_conv_3x3', 3), ('sep_conv_3x3',0), ('dil_conv_5x5', 4)], normal_concat=range(2, 6), reduce=[('avg_pool_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_3x3', 0), ('dil_conv_5x5', 2), ('max_pool_3x3', 0), ('dil_conv_3x3', 1), ('dil_conv_3x3', 1), ('dil_conv_5x5', 3)], reduce_concat=range(2, 6))"  # noqa: E501
# DARTS cnn/genotypes.py NASNet, in its multi-line layout with trailing commas.
NASNET_TEXT = """Genotype(
  normal = [
    ('sep_conv_5x5', 1),
    ('sep_conv_3x3', 0),
    ('sep_conv_5x5', 0),
    ('sep_conv_3x3', 0),
    ('avg_pool_3x3', 1),
    ('skip_connect', 0),
    ('avg_pool_3x3', 0),
    ('avg_pool_3x3', 0),
    ('sep_conv_3x3', 1),
    ('skip_connect', 1),
  ],
  normal_concat = [2, 3, 4, 5, 6],
  reduce = [
    ('sep_conv_5x5', 1),
    ('sep_conv_7x7', 0),
    ('max_pool_3x3', 1),
    ('sep_conv_7x7', 0),
    ('avg_pool_3x3', 1),
    ('sep_conv_5x5', 0),
    ('skip_connect', 3),
    ('avg_pool_3x3', 2),
    ('sep_conv_3x3', 2),
    ('max_pool_3x3', 1),
  ],
  reduce_concat = [4, 5, 6],
)
"""

PUBLISHED_TEXTS = {
    "DARTS_V1": DARTS_V1_TEXT,
    "DARTS_V2": DARTS_V2_TEXT,
    "PC_DARTS": PC_DARTS_TEXT,
    "PC_DARTS_image": PC_DARTS_IMAGE_TEXT,
    "PDARTS": PDARTS_TEXT,
    "NASNet": NASNET_TEXT,
}

PAIRS = [("sep_conv_3x3", 0), ("sep_conv_3x3", 1)] * 4
CONCAT = [2, 3, 4, 5]
SEVEN = repr(PAIRS[:7])[:-1]  # the text of seven valid pairs without the closing bracket


def _text(normal: str = repr(PAIRS), normal_concat: str = "[2, 3, 4, 5]", reduce: str = repr(PAIRS),
          reduce_concat: str = "[2, 3, 4, 5]") -> str:
    """Genotype text with the given field texts, valid by default."""
    return f"Genotype(normal={normal}, normal_concat={normal_concat}, reduce={reduce}, reduce_concat={reduce_concat})"


@pytest.mark.parametrize("name", sorted(GENOTYPES))
def test_published_repr_round_trips(name):
    """Every published genotype's repr parses back to an equal genotype that prints identically."""
    text = repr(GENOTYPES[name])
    parsed = parse_genotype(text)
    assert parsed == GENOTYPES[name]
    assert repr(parsed) == text and str(parsed) == text and format(parsed) == text


@pytest.mark.parametrize("text", [DARTS_V1_TEXT, DARTS_V2_TEXT, PC_DARTS_TEXT, PC_DARTS_IMAGE_TEXT])
def test_pasted_published_text_reprints_identically(text):
    """Published one-line texts in the canonical layout re-print character for character."""
    assert repr(parse_genotype(text)) == text


@pytest.mark.parametrize("name", sorted(PUBLISHED_TEXTS))
def test_stored_genotypes_equal_published_text(name):
    """The stored published cells equal the text pasted from the official genotypes.py files."""
    assert GENOTYPES[name] == parse_genotype(PUBLISHED_TEXTS[name])


def test_range_concat_prints_as_range_and_equals_list():
    """A range concat prints as `range(2, 6)` and is equal (and hashes equal) to the list form."""
    with_range = Genotype(PAIRS, range(2, 6), PAIRS, range(2, 6))
    with_list = Genotype(normal=PAIRS, normal_concat=CONCAT, reduce=PAIRS, reduce_concat=CONCAT)
    assert "normal_concat=range(2, 6)" in repr(with_range) and "reduce_concat=range(2, 6))" in repr(with_range)
    assert "normal_concat=[2, 3, 4, 5]" in repr(with_list)
    assert with_range == with_list and not with_range != with_list
    assert hash(with_range) == hash(with_list)
    assert with_range != Genotype(PAIRS, [2, 3, 4], PAIRS, CONCAT)


def test_namedtuple_behaviour_and_immutability():
    """Fields read by name and by unpacking, the value is immutable, _replace re-validates."""
    g = Genotype(PAIRS, CONCAT, PAIRS, CONCAT)
    normal, normal_concat, reduce, reduce_concat = g
    assert list(normal) == PAIRS and list(g.normal_concat) == CONCAT and list(reduce_concat) == CONCAT
    assert list(zip(*g.normal))[0] == tuple(op for op, _ in PAIRS)
    with pytest.raises(AttributeError):
        g.normal = []  # type: ignore[misc]
    with pytest.raises(TypeError):
        g.normal[0] = ("skip_connect", 0)  # type: ignore[index]
    assert g._replace(reduce_concat=[5]).reduce_concat == (5,)
    with pytest.raises(ValueError, match="reduce_concat"):
        g._replace(reduce_concat=[9])
    assert pickle.loads(pickle.dumps(g)) == g


def test_json_round_trip():
    """to_json is plain JSON data and from_json(json.loads(json.dumps(...))) gives an equal genotype."""
    for g in GENOTYPES.values():
        data = json.loads(json.dumps(g.to_json()))
        assert data == g.to_json()
        assert Genotype.from_json(data) == g
    assert GENOTYPES["DARTS_V2"].to_json()["normal"][0] == ["sep_conv_3x3", 0]
    assert GENOTYPES["PC_DARTS"].to_json()["normal_concat"] == [2, 3, 4, 5]


def test_from_json_validates():
    """from_json rejects missing or unexpected keys and bad content with ValueError."""
    good = GENOTYPES["DARTS_V2"].to_json()
    with pytest.raises(ValueError, match="missing: \\['reduce_concat'\\]"):
        Genotype.from_json({k: v for k, v in good.items() if k != "reduce_concat"})
    with pytest.raises(ValueError, match="unexpected: \\['extra'\\]"):
        Genotype.from_json({**good, "extra": 1})
    with pytest.raises(ValueError, match="unknown op 'conv_9x9' in normal\\[0\\]"):
        Genotype.from_json({**good, "normal": [["conv_9x9", 0]] + good["normal"][1:]})
    with pytest.raises(ValueError, match="must be an object"):
        Genotype.from_json([good])  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs, message", [
    ({"normal": PAIRS[:7]}, "normal must have an even, non-zero number .* got 7"),
    ({"normal": []}, "normal must have an even, non-zero number .* got 0"),
    ({"reduce": [("sep_conv_9x9", 0)] + PAIRS[1:]}, "unknown op 'sep_conv_9x9' in reduce\\[0\\]; valid: none, "),
    ({"normal": [(3, 0)] + PAIRS[1:]}, "unknown op 3 in normal\\[0\\]"),
    ({"normal": PAIRS[:2] + [("skip_connect", 3)] + PAIRS[3:]}, "bad input index 3 in normal\\[2\\].* 0..2"),
    ({"normal": [("skip_connect", -1)] + PAIRS[1:]}, "bad input index -1 in normal\\[0\\]"),
    ({"normal": [("skip_connect", True)] + PAIRS[1:]}, "bad input index True"),
    ({"normal": [("skip_connect", 0, 1.0)] + PAIRS[1:]}, "normal\\[0\\] must be an \\(op_name, input_index\\) pair"),
    ({"normal": "sep_conv_3x3"}, "normal must be a list"),
    ({"normal_concat": [2, 3, 4, 6]}, "normal_concat index 6 out of range: valid node indices are 2..5"),
    ({"normal_concat": [1, 2]}, "normal_concat index 1 out of range"),
    ({"normal_concat": []}, "normal_concat must name at least one node"),
    ({"normal_concat": [2, 2]}, "normal_concat repeats a node index"),
    ({"reduce_concat": range(2, 7)}, "reduce_concat=range\\(2, 7\\) is not"),
    ({"reduce_concat": range(2, 6, 2)}, "step-1 range"),
    ({"reduce_concat": range(2, 10**30)}, "reduce_concat=range"),
    ({"reduce_concat": "2345"}, "reduce_concat must be a list of node indices or a range"),
])
def test_constructor_rejects_bad_parts(kwargs, message):
    """Each bad part raises ValueError naming the field, the bad value and what is valid."""
    fields = {"normal": PAIRS, "normal_concat": CONCAT, "reduce": PAIRS, "reduce_concat": CONCAT, **kwargs}
    with pytest.raises(ValueError, match=message):
        Genotype(**fields)


def test_validation_follows_ops_and_node_count():
    """Known ops are exactly darts.ops.OPS, and 5-node cells allow inputs up to 5 and concat up to 6."""
    pairs = [(op, 0) for op in OPS for _ in range(2)]
    assert {op for op, _ in Genotype(pairs, [2], pairs, [2]).normal} == set(OPS)
    five = PAIRS + [("sep_conv_3x3", 5), ("skip_connect", 4)]
    assert Genotype(five, [2, 6], five, [6]).normal[8] == ("sep_conv_3x3", 5)
    with pytest.raises(ValueError, match="node indices are 2..6"):
        Genotype(five, [7], five, [6])


def test_parse_accepts_positional_tuples_and_whitespace():
    """Positional fields, tuple containers and surrounding whitespace parse to the same value."""
    positional = f"  \n Genotype({tuple(PAIRS)!r}, (2, 3, 4, 5), {PAIRS!r}, range(2, 6))\n "
    assert parse_genotype(positional) == Genotype(PAIRS, CONCAT, PAIRS, CONCAT)
    assert parse_genotype(_text(normal_concat="range(2, 6)")).normal_concat == range(2, 6)


@pytest.mark.parametrize("text, message", [
    ("Genotype(normal=[('sep_conv_3x3', 0)", "syntax error at line 1"),
    ("Genotype(normal=[)", "syntax error"),
    ("", "syntax error"),
    ("Genotyp(normal=[], normal_concat=[], reduce=[], reduce_concat=[])", "expected Genotype\\(...\\) but got"),
    ("genotypes.Genotype()", "expected Genotype\\(...\\) but got `genotypes.Genotype\\(\\)`"),
    ("__import__('os')", "expected Genotype\\(...\\) but got `__import__\\('os'\\)`"),
    ("DARTS_V2", "expected Genotype\\(...\\) but got `DARTS_V2`"),
    ("genotype = Genotype()", "syntax error"),
    (_text(normal="[('sep_conv_9x9', 0)] * 8"), "normal: expected a list of .* got `\\[\\('sep_conv_9x9', 0\\)\\] \\*"),
    (_text(reduce=repr([("sep_conv_9x9", 0)] + PAIRS[1:])), "unknown op 'sep_conv_9x9' in reduce\\[0\\]; valid: none,"),
    (_text(normal=repr(PAIRS[:2] + [("skip_connect", 3)] + PAIRS[3:])), "bad input index 3 in normal\\[2\\]"),
    (_text(normal=repr(PAIRS[:7])), "normal must have an even, non-zero number .* got 7"),
    (_text(normal_concat="[2, 3, 4, 5, 6]"), "normal_concat index 6 out of range"),
    (_text(reduce_concat="range(2, 7)"), "reduce_concat=range\\(2, 7\\) is not"),
    (_text(reduce_concat="range(2, 6, 1)"), "reduce_concat: expected a list of node indices or range\\(a, b\\)"),
    (_text(reduce_concat="list(range(2, 6))"), "reduce_concat: expected .* got `list\\(range\\(2, 6\\)\\)`"),
    (_text(normal_concat="[2, 3, 4, 5.0]"), "normal_concat\\[3\\]: expected an int literal, got `5.0`"),
    (_text(normal="[('sep_conv_3x3', -1)] + []"), "normal: expected a list"),
    (_text(normal=SEVEN + ", ('sep_conv_3x3', -1)]"), "normal\\[7\\] input index: expected an int literal, got `-1`"),
    (_text(normal=SEVEN + ", (OP, 0)]"), "normal\\[7\\] op name: expected a str literal, got `OP`"),
    (_text(normal=SEVEN + ", ('sep_conv_3x3', 0, 1.0)]"), "normal\\[7\\]: expected a pair"),
    (_text().replace("reduce_concat=", "reduce_cat="), "unknown field 'reduce_cat'"),
    (_text().replace(", reduce_concat=[2, 3, 4, 5]", ""), "missing reduce_concat"),
    (_text().replace("Genotype(", "Genotype(*x, "), "does not accept \\*arguments"),
    (_text().replace("Genotype(", "Genotype(**x, "), "does not accept \\*\\*arguments"),
    (_text().replace("reduce_concat=", "normal=[], reduce_concat="), "field 'normal' given twice"),
    (f"Genotype({PAIRS!r}, {CONCAT!r}, {PAIRS!r}, {CONCAT!r}, {CONCAT!r})", "at most 4 positional"),
])
def test_parse_rejects_malformed_text(text, message):
    """Malformed or non-literal text raises ValueError with a message saying what is wrong."""
    with pytest.raises(ValueError, match=message):
        parse_genotype(text)


def test_parse_never_evaluates(tmp_path):
    """Calls inside the text are refused, not run: their side effects never happen."""
    marker = tmp_path / "ran"
    touch = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    texts = [
        touch,
        _text(normal=f"[({touch}, 0)] + {PAIRS[1:]!r}"),
        _text(normal_concat=f"range({touch}, 6)"),
        _text(reduce_concat=f"[2, 3, 4, {touch}]"),
        f"Genotype(normal={touch}, normal_concat=[2], reduce=[], reduce_concat=[2])",
        f"Genotype(**{{'normal': {touch}}})",
    ]
    for text in texts:
        with pytest.raises(ValueError):
            parse_genotype(text)
    assert not marker.exists()
    with pytest.raises(ValueError, match="must be a str"):
        parse_genotype(b"Genotype()")  # type: ignore[arg-type]


def test_published_metadata_and_lookup():
    """PUBLISHED_ERROR names known genotypes with plausible numbers; unknown names raise ValueError."""
    assert set(PUBLISHED_ERROR) <= set(GENOTYPES)
    for paper, error, params in PUBLISHED_ERROR.values():
        assert paper and 0 < error < 10 and 0 < params < 10
    assert get_genotype("DARTS_V2") is GENOTYPES["DARTS_V2"]
    with pytest.raises(ValueError, match="unknown genotype 'DARTS_V3'; valid: NASNet, AmoebaNet"):
        get_genotype("DARTS_V3")
    assert len(GENOTYPES["NASNet"].normal) == 10 and len(GENOTYPES["AmoebaNet"].reduce) == 10
