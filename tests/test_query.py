"""The one query parser (petl_core.query), shared by the app's query box and the CLI's --query."""
import pytest

from petl_core.query import CLS, Query, centre_patch, parse_query


def test_class_token_centre_and_patches_parse():
    assert parse_query("cls", (8, 8)) == parse_query(" Class token ", (8, 8)) == parse_query(None, (8, 8)) == CLS
    assert parse_query(" 3, 4 ", (8, 8)) == Query((3, 4)) and parse_query("(7,0)", (8, 8)) == Query.at(7, 0)
    assert parse_query("center", (14, 14)) == centre_patch((14, 14)) == Query.at(7, 7)
    assert parse_query("centre", (3, 4)).patch == (1, 2)


def test_a_query_reads_back_and_labels_itself():
    for query in (CLS, Query.at(0, 11), Query.at(3, 4)):
        assert parse_query(query.text, (12, 12)) == query
    assert CLS.is_cls and CLS.label == "class token" and CLS.text == "cls"
    assert not Query.at(3, 4).is_cls and Query.at(3, 4).label == "patch (row 3, col 4)"


@pytest.mark.parametrize(("text", "message"), [
    ("8,0", r"Patch \(8, 0\) is outside the 8×8 patch grid\."),
    ("-1,2", r"Patch \(-1, 2\) is outside"),
    ("middle", r"Query 'middle' is not 'cls', 'center' or 'row,col'\."),
    ("1,2,3", "is not 'cls', 'center' or 'row,col'"),
    ("x" * 500, r"Query 'xxx.*\.\.\. is not"),
])
def test_anything_else_is_one_sentence(text, message):
    with pytest.raises(ValueError, match=message) as refused:
        parse_query(text, (8, 8))
    assert len(str(refused.value)) < 120 and "\n" not in str(refused.value)
