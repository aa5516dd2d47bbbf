"""Finding the shell examples of the documentation: the fenced ```sh blocks of README.md and docs/*.md.

Pure text handling, so it is unit-tested on its own (tests/docs/test_extract.py). A block runs unless
an HTML comment right before it opts it out with a reason:

    <!-- not-run: starts a long-running server -->
    ```sh
    dockyard server ...
    ```

Only blank lines may stand between the comment and the fence, so a marker cannot drift onto another
block unnoticed; a marker that is followed by anything else is an error, and so is one without a reason.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHELL_LANGS = {"sh", "bash", "shell"}
NOT_RUN = re.compile(r"^\s*<!--\s*not-run\s*:(?P<reason>(?:(?!-->).)*)-->\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")


class ExtractError(ValueError):
    """The markdown breaks the conventions the runner relies on (named with file:line)."""


@dataclass(frozen=True)
class Block:
    path: Path          # the markdown file
    line: int           # 1-based line of the first line of code (after the opening fence)
    lang: str
    code: str
    not_run: str | None  # the reason given in <!-- not-run: ... -->, or None when the block runs

    @property
    def where(self) -> str:
        try:
            rel = self.path.relative_to(ROOT)
        except ValueError:
            rel = self.path
        return f"{rel}:{self.line}"

    def numbered(self) -> str:
        """The block as the reader sees it, each line with its line number in the file."""
        return "\n".join(f"{self.line + i:5d} | {text}" for i, text in enumerate(self.code.split("\n")))


def blocks(path: Path, text: str | None = None) -> list[Block]:
    """Every shell block of one markdown file, in order (blocks of other languages are left out)."""
    lines = (path.read_text() if text is None else text).split("\n")
    out: list[Block] = []
    pending: tuple[int, str] | None = None  # (line, reason) of a not-run marker waiting for its block
    i = 0
    while i < len(lines):
        line = lines[i]
        m = FENCE.match(line)
        if m:
            fence, info = m["fence"], m["info"].strip()
            lang = info.split()[0].lower() if info else ""
            end = i + 1
            while end < len(lines) and not lines[end].strip().startswith(fence):
                end += 1
            if end == len(lines):
                raise ExtractError(f"{path}:{i + 1}: code fence {fence}{info} is never closed")
            indent = len(m["indent"])
            code = "\n".join(text[indent:] if text[:indent].strip() == "" else text for text in lines[i + 1:end])
            if pending is not None and lang not in SHELL_LANGS:
                raise ExtractError(f"{path}:{pending[0]}: a not-run marker must come right before a ```sh block, "
                                   f"but a ```{lang} block follows it")
            if lang in SHELL_LANGS:
                out.append(Block(path, i + 2, lang, code, pending[1] if pending else None))
            pending = None
            i = end + 1
            continue
        nm = NOT_RUN.match(line)
        if nm:
            if pending is not None:
                raise ExtractError(f"{path}:{pending[0]}: not-run marker without a block after it")
            reason = nm["reason"].strip()
            if not reason:
                raise ExtractError(f"{path}:{i + 1}: a not-run marker needs a reason: <!-- not-run: why -->")
            pending = (i + 1, reason)
        elif line.strip().startswith("<!--") and "not-run" in line:
            raise ExtractError(f"{path}:{i + 1}: malformed not-run marker (write <!-- not-run: reason --> "
                               f"on a line of its own): {line.strip()}")
        elif pending is not None and line.strip():
            raise ExtractError(f"{path}:{pending[0]}: not-run marker must be followed by a ```sh block "
                               f"(only blank lines between), found: {line.strip()[:60]}")
        i += 1
    if pending is not None:
        raise ExtractError(f"{path}:{pending[0]}: not-run marker at the end of the file, with no block after it")
    return out


def pages(root: Path = ROOT) -> list[Path]:
    """The documentation whose examples are run: README.md and every docs/*.md."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    out, fence = set(), False
    for line in text.split("\n"):
        if FENCE.match(line):
            fence = not fence
        elif not fence and (m := re.match(r"^#{1,6} (.*)$", line)):
            out.add(slug(m[1]))
    return out


def broken_links(path: Path) -> list[str]:
    """Relative links of one page whose file or #anchor does not exist ("file:line: link")."""
    text = path.read_text()
    bad = []
    for n, line in enumerate(text.split("\n"), 1):
        for target in LINK.findall(line):
            if re.match(r"^[a-z]+:", target):
                continue  # https:, mailto: ...
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            if not dest.exists():
                bad.append(f"{path.name}:{n}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
                bad.append(f"{path.name}:{n}: {target} (no such heading in {dest.name})")
    return bad


HEREDOC = re.compile(r"<<(-?)\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")


def point_at(code: str, old: str, new: str) -> str:
    """Replace the server URL `old` by `new` where the shell itself uses it (words, "double quotes"),
    not inside 'single quotes', $'...' or here-documents: those are file contents and request bodies,
    where http://127.0.0.1:8080 is a container's own address (a health check, say), not the server's."""
    out: list[str] = []
    quote: str | None = None
    pending: list[tuple[bool, str]] = []  # here-documents opened on the current line
    j, n = 0, len(code)
    while j < n:
        c = code[j]
        if quote in (None, '"') and code.startswith(old, j):
            out.append(new)
            j += len(old)
            continue
        if c == "\\" and quote != "'":
            out.append(code[j:j + 2])
            j += 2
            continue
        if quote is None:
            if c in "'\"":
                quote = c
            elif c == "<" and (m := HEREDOC.match(code, j)):
                pending.append((m[1] == "-", m[3]))
                out.append(m[0])
                j = m.end()
                continue
            elif c == "#" and (j == 0 or code[j - 1] in " \t;\n"):
                end = code.find("\n", j)
                end = n if end < 0 else end
                out.append(code[j:end])  # a comment: nothing to run
                j = end
                continue
            elif c == "\n" and pending:
                out.append(c)
                j += 1
                for strip_tabs, word in pending:  # here-document bodies, copied as they are
                    while j < n:
                        end = code.find("\n", j)
                        end = n if end < 0 else end + 1
                        body = code[j:end]
                        out.append(body)
                        j = end
                        if (body.rstrip("\n").lstrip("\t") if strip_tabs else body.rstrip("\n")) == word:
                            break
                pending = []
                continue
        elif c == quote:
            quote = None
        out.append(c)
        j += 1
    return "".join(out)
