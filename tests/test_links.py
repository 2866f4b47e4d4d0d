"""Shareable views (app.links): a link's parameters are checked like any hostile input, and a link made from a view
opens that view."""
from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from app.links import MAX_INDEX, ViewLink, example_name, example_path, examples
from app.uploads import EXAMPLES

MODELS = ["convit_scenes_gpsa50", "deit_scenes"]
TABS = ["attention", "gpsa", "replay"]


def _parse(query: str) -> tuple[ViewLink, list[str]]:
    return ViewLink.parse(dict(parse_qsl(query.lstrip("?"))), MODELS, TABS)


def test_a_link_round_trips_through_its_query_string():
    link = ViewLink(model="deit_scenes", example="scene_dress.png", tab="replay", block=3, head=7, query="11,0",
                    step=250, guide=2)
    assert _parse(link.query_string()) == (link, [])
    assert ViewLink().query_string() == ""
    assert _parse("?query=cls")[0].query == "cls"


@pytest.mark.parametrize(("key", "value"), [
    ("model", "timm/../../etc"), ("model", "vit_huge_patch14_224"), ("example", "../app.py"),
    ("example", "/etc/passwd"), ("example", "CREDITS.md"), ("tab", "settings"), ("block", "-1"), ("block", "2.5"),
    ("block", str(MAX_INDEX + 1)), ("head", "1e9"), ("step", "٣"), ("query", "3,4;drop"), ("query", "1000,1"),
    ("query", "centre"), ("guide", "x" * 5000)])
def test_each_part_a_link_may_not_carry_is_dropped_with_a_sentence(key, value):
    link, dropped = _parse(f"model=deit_scenes&{key}={value}")
    assert getattr(link, key) is None
    assert link.model == "deit_scenes" or key == "model"
    assert len(dropped) == 1 and dropped[0].startswith(f"the link's {key} ")
    assert len(dropped[0]) < 120  # a 5,000-character value is not echoed back


def test_unknown_parameters_are_ignored():
    assert _parse("utm_source=mail&__theme=dark&tab=gpsa") == (ViewLink(tab="gpsa"), [])


def test_an_example_is_named_by_its_bytes_and_only_shipped_files_have_paths(tmp_path):
    name = sorted(examples())[0]
    data = (EXAMPLES / name).read_bytes()
    assert example_name(data) == name
    assert example_name(data + b"\0") is None  # an upload with the same name but other bytes cannot be linked
    assert example_path(name) == str(EXAMPLES / name)
    with pytest.raises(ValueError, match="no shipped example"):
        example_path("../app.py")
    assert urlsplit(ViewLink(example=name).query_string()).query == f"example={name}"
