"""Importers read small files in the real schemas; the dump reader streams."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest

from nlp_core.corpora import (
    chatterbot_statements,
    chitchat_utterances,
    in_heldout,
    load_so_tags,
    parse_tag_list,
)
from nlp_core.importers import (
    Post,
    iter_dialogues,
    iter_posts_xml,
    iter_tagged_posts,
    parse_dump_tags,
)

_POSTS_XML = """<?xml version="1.0" encoding="utf-8"?>
<posts>
  <row Id="4" PostTypeId="1" AcceptedAnswerId="7" CreationDate="2008-07-31T21:42:52.667"
       Score="630" ViewCount="42817"
       Body="&lt;p&gt;I want to use a &lt;code&gt;Track-Bar&lt;/code&gt;&lt;/p&gt;"
       OwnerUserId="8" Title="How to convert Decimal to Double in C#?"
       Tags="&lt;c#&gt;&lt;floating-point&gt;&lt;type-conversion&gt;" AnswerCount="13" />
  <row Id="7" PostTypeId="2" ParentId="4" Score="419"
       Body="&lt;p&gt;An explicit cast.&lt;/p&gt;" />
  <row Id="9" PostTypeId="1" Title="Calculate age &quot;in years&quot;" Tags="|c#|.net|datetime|"
       Body="&lt;p&gt;Given a DateTime&lt;/p&gt;" />
  <row Id="11" PostTypeId="1" Title="Untagged question" />
  <row Id="12" PostTypeId="5" Body="tag wiki excerpt" />
</posts>
"""


def test_posts_xml_yields_questions_only(tmp_path: Path) -> None:
    path = tmp_path / "Posts.xml"
    path.write_text(_POSTS_XML, encoding="utf-8")
    posts = list(iter_posts_xml(path))
    assert posts == [
        Post(4, "How to convert Decimal to Double in C#?",
             ("c#", "floating-point", "type-conversion")),
        Post(9, 'Calculate age "in years"', ("c#", ".net", "datetime")),
        Post(11, "Untagged question", ()),
    ]
    with_body = list(iter_posts_xml(path, with_body=True))
    assert with_body[0].body == "<p>I want to use a <code>Track-Bar</code></p>"


def test_posts_xml_streams_in_flat_memory(tmp_path: Path) -> None:
    path = tmp_path / "Posts.xml"
    title = quoteattr("How do I parse a fairly long title about " + "things " * 20)
    body = quoteattr("<p>" + "A long body paragraph. " * 40 + "</p>")
    with path.open("w", encoding="utf-8") as handle:
        handle.write('<?xml version="1.0" encoding="utf-8"?>\n<posts>\n')
        for i in range(1, 20_001):
            handle.write(f'  <row Id="{i}" PostTypeId="{1 if i % 2 else 2}" Title={title} '
                         f'Body={body} Tags="&lt;python&gt;&lt;pandas&gt;" />\n')
        handle.write("</posts>\n")
    assert path.stat().st_size > 15_000_000
    tracemalloc.start()
    count = sum(1 for _ in iter_posts_xml(path))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 10_000
    assert peak < 3_000_000  # a tree of all rows would hold > 15 MB of attribute text


@pytest.mark.parametrize(("raw", "tags"), [
    ("<python><pandas>", ("python", "pandas")),
    ("|python|pandas|", ("python", "pandas")),
    ("<c++><c#>", ("c++", "c#")),
    ("", ()),
    (None, ()),
])
def test_dump_tag_formats(raw: str | None, tags: tuple[str, ...]) -> None:
    assert parse_dump_tags(raw) == tags


def test_tagged_posts_tsv(tmp_path: Path) -> None:
    path = tmp_path / "tagged_posts.tsv"
    path.write_text(
        "post_id\ttitle\ttag\n"
        "9\tCalculate age in C#\tc#\n"
        '16\tFilling a DataSet or "DataTable" from a LINQ query result set\tc#\n'
        "337\tXML Processing in Python\tpython\n",
        encoding="utf-8")
    posts = list(iter_tagged_posts(path))
    assert [p.id for p in posts] == [9, 16, 337]
    assert posts[1].title == 'Filling a DataSet or "DataTable" from a LINQ query result set'
    assert posts[2].tags == ("python",)


def test_tagged_posts_needs_its_columns(tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text("id\ttitle\n1\tx\n", encoding="utf-8")
    with pytest.raises(ValueError, match="missing columns"):
        list(iter_tagged_posts(path))


def test_dialogues_tsv(tmp_path: Path) -> None:
    path = tmp_path / "dialogues.tsv"
    path.write_text(
        "text\ttag\n"
        "Okay -- you're gonna need to learn how to lie.\tdialogue\n"
        "\tdialogue\n"
        "I'm kidding.  You know how sometimes you just become this \"persona\"?\tdialogue\n",
        encoding="utf-8")
    lines = list(iter_dialogues(path))
    assert [d.tag for d in lines] == ["dialogue", "dialogue"]
    assert lines[1].text.endswith('"persona"?')


def test_so_tags_list_literal_is_parsed_safely(tmp_path: Path) -> None:
    assert parse_tag_list("['c#', 'asp.net']") == ["c#", "asp.net"]
    with pytest.raises(ValueError):
        parse_tag_list("__import__('os').system('echo pwned')")
    with pytest.raises(ValueError):
        parse_tag_list("{'a': 1}")
    path = tmp_path / "tags.tsv"
    path.write_text('title\ttags\n"Quoted ""title"""\t[\'php\', \'sql\']\n', encoding="utf-8")
    assert load_so_tags(path) == (['Quoted "title"'], [["php", "sql"]])


def test_dialogue_corpora_leave_out_computer_topics() -> None:
    statements = chatterbot_statements()
    assert "Hello" in statements and len(statements) > 500
    assert "can you write a sorting algorithm?" not in statements  # coding.yml
    assert "can you write a sorting algorithm?" in chatterbot_statements(exclude=())
    utterances = chitchat_utterances()
    assert len(utterances) > 100_000 and "Hello" in utterances


def test_heldout_split_is_stable_and_sized() -> None:
    texts = [f"question number {i}" for i in range(5000)]
    held = [t for t in texts if in_heldout(t, 0.2)]
    assert 0.17 < len(held) / len(texts) < 0.23
    assert held == [t for t in reversed(texts) if in_heldout(t, 0.2)][::-1]
