"""The extraction of the docs' shell examples (tests/docs/examples.py): pure text, no Docker."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.examples import ExtractError, blocks, broken_links, pages, point_at, slug

P = Path("page.md")


def test_sh_blocks_in_order_with_their_lines_and_others_left_out() -> None:
    text = "\n".join([
        "# Title",                 # 1
        "```sh",                   # 2
        "echo one",                # 3
        "```",                     # 4
        "```text",                 # 5
        "$ echo not run",          # 6
        "```",                     # 7
        "```bash",                 # 8
        "echo two",                # 9
        "echo three",              # 10
        "```",                     # 11
        "```json",                 # 12
        '{"a": 1}',                # 13
        "```",                     # 14
    ])
    got = blocks(P, text)
    assert [(b.line, b.lang, b.code, b.not_run) for b in got] == [
        (3, "sh", "echo one", None), (9, "bash", "echo two\necho three", None)]
    assert got[1].where == "page.md:9"
    assert got[1].numbered() == "    9 | echo two\n   10 | echo three"


def test_not_run_marker_applies_to_the_next_block_only() -> None:
    text = "intro\n<!-- not-run: starts a server -->\n\n```sh\ndockyard server\n```\n```sh\necho runs\n```\n"
    first, second = blocks(P, text)
    assert first.not_run == "starts a server" and first.line == 5
    assert second.not_run is None


def test_a_sh_fence_inside_another_block_is_text() -> None:
    text = "````markdown\n```sh\nnot a block\n```\n````\n"
    assert blocks(P, text) == []


def test_indented_blocks_in_lists_lose_their_indent() -> None:
    text = "- item:\n\n  ```sh\n  echo a\n    echo b\n  ```\n"
    (b,) = blocks(P, text)
    assert b.code == "echo a\n  echo b"


@pytest.mark.parametrize("text, message", [
    ("<!-- not-run: -->\n```sh\nx\n```\n", "needs a reason"),
    ("<!-- not-run: why -->\nsome prose\n```sh\nx\n```\n", "must be followed by a ```sh block"),
    ("<!-- not-run: why -->\n```text\nx\n```\n", "a ```text block follows it"),
    ("<!-- not-run: why -->\n", "end of the file"),
    ("<!-- not-run: a --> <!-- b -->\n```sh\nx\n```\n", "malformed"),
    ("<!--not-run why-->\n```sh\nx\n```\n", "malformed"),
    ("```sh\necho never closed\n", "never closed"),
])
def test_markers_and_fences_that_would_mislead_are_errors(text: str, message: str) -> None:
    with pytest.raises(ExtractError, match=message) as e:
        blocks(P, text)
    assert str(e.value).startswith("page.md:")


def test_prose_may_mention_the_marker_in_backticks() -> None:
    assert blocks(P, "Write `<!-- not-run: reason -->` before a block.\n") == []


def test_every_page_parses_and_most_examples_run() -> None:
    found = {p.name: blocks(p) for p in pages()}
    assert "README.md" in found and len(found) >= 11, sorted(found)
    run = sum(b.not_run is None for bs in found.values() for b in bs)
    skipped = [b for bs in found.values() for b in bs if b.not_run]
    assert run >= 25, run
    assert len(skipped) <= run // 2, [b.where for b in skipped]  # opting out stays the exception


def test_links_between_the_pages_resolve() -> None:
    bad = [b for p in pages() for b in broken_links(p)]
    assert not bad, "\n".join(bad)


def test_slugs_follow_github() -> None:
    assert slug("Design notes (where we chose differently from DESIGN.md, and why)") == \
        "design-notes-where-we-chose-differently-from-designmd-and-why"
    assert slug("Policy: host privileges") == "policy-host-privileges"
    assert slug("A server at cluster scale (`bench/simulate.py`)") == "a-server-at-cluster-scale-benchsimulatepy"


def test_the_server_url_is_pointed_at_the_test_server_only_where_the_shell_uses_it() -> None:
    old, new = "http://127.0.0.1:8080", "http://127.0.0.1:4711"
    code = "\n".join([
        "API=http://127.0.0.1:8080",
        'dockyard login --server "http://127.0.0.1:8080" # http://127.0.0.1:8080',
        "cat > c.yml <<'EOF'",
        "test: [CMD, wget, http://127.0.0.1:8080/]",
        "EOF",
        "curl -d '{\"health\": \"http://127.0.0.1:8080/\",",
        "  \"x\": \"http://127.0.0.1:8080\"}' http://127.0.0.1:8080/v1/services/x",
        "curl --data-binary $'url: http://127.0.0.1:8080\\n' \"$API/v1\"",
        "cat <<-END",
        "\thttp://127.0.0.1:8080",
        "\tEND",
        "echo http://127.0.0.1:8080",
    ])
    got = point_at(code, old, new).split("\n")
    assert got[0] == "API=http://127.0.0.1:4711"
    assert got[1].startswith('dockyard login --server "http://127.0.0.1:4711"')
    assert got[3] == "test: [CMD, wget, http://127.0.0.1:8080/]"          # here-document: left alone
    assert got[5] == code.split("\n")[5]                                  # single quotes: a body
    assert got[6] == "  \"x\": \"http://127.0.0.1:8080\"}' http://127.0.0.1:4711/v1/services/x"
    assert "url: http://127.0.0.1:8080" in got[7]
    assert got[9] == "\thttp://127.0.0.1:8080"
    assert got[11] == "echo http://127.0.0.1:4711"
