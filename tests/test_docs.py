"""The commands the README and docs/ give still run as written: every `mobilecodec SUB ...` names a
subcommand and options that SUB's parser has today, and every script they name exists. Users copy
these lines; a renamed or removed option would otherwise leave them a recipe that fails."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
_CMD = re.compile(r"(?:^|\s|/)mobilecodec\s+([a-z][a-z0-9-]*)(.*?)(?=$|\||;|&&|\bthen\b|\bmobilecodec\s)")
_SCRIPT = re.compile(r"(?<![\w/.])((?:scripts|benchmarks)/[\w/.-]+\.(?:py|sh))")


def _code(text: str) -> list[str]:
    """Each line of the fenced blocks (backslash continuations joined) and each inline code span
    (line breaks inside it joined: spans wrap in the Markdown source)."""
    blocks = [line for b in re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
              for line in b.replace("\\\n", " ").splitlines()]
    inline = re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S).replace("\n", " "))
    return blocks + inline


def _options(parser) -> dict[str, set[str]]:
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return {name: {s for a in p._actions for s in a.option_strings} for name, p in sub.choices.items()}


def test_documented_commands_use_options_the_cli_has():
    from mobilecodec.cli import COMMANDS, build_parser

    known = _options(build_parser())
    assert set(known) == set(COMMANDS)
    seen, wrong = 0, []
    for doc in DOCS:
        for code in _code(doc.read_text()):
            for m in _CMD.finditer(code):
                sub = m.group(1)
                if sub not in known:
                    wrong.append(f"{doc.name}: no subcommand 'mobilecodec {sub}': {code.strip()[:120]}")
                    continue
                seen += 1
                try:
                    tokens = shlex.split(m.group(2))
                except ValueError:  # an unbalanced quote in prose around the command
                    tokens = m.group(2).split()
                for t in tokens:
                    opt = t.split("=")[0].rstrip(",.:)")
                    if opt.startswith("--") and len(opt) > 2 and opt not in known[sub]:
                        wrong.append(f"{doc.name}: 'mobilecodec {sub}' has no {opt}: {code.strip()[:120]}")
    assert seen > 100, seen  # the docs hold ~170 such commands: the extraction still finds them
    assert not wrong, "\n".join(wrong)


def test_documented_scripts_exist():
    named = {m.group(1).rstrip(".") for doc in DOCS for code in _code(doc.read_text())
             for m in _SCRIPT.finditer(code)}
    assert len(named) > 20, named
    missing = sorted(s for s in named if not (ROOT / s).is_file())
    assert not missing, missing
