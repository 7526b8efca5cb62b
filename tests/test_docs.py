"""The README and docs/ stand on their own and do not drift from the code (issue 13).

* No link or path leads outside the repository (``../``, ``shared/``); every relative link
  names a file that exists, and every ``#anchor`` a heading of its page.
* Every ```python block compiles; its imports run (every name it imports exists); every call
  of a class or function it imports binds to the real signature (so ``CentraliAuth(...,
  base_url=...)`` cannot come back), and so does every method call on an object made by one;
  blocks marked ``<!-- docs-test: run -->`` run whole.
* docs/configuration.md names every setting of ``centrali.config.Settings``; docs/cli.md every
  command and option of ``centrali``; the README links every page of docs/.
* The examples' third-party imports are dependencies of the package or of its ``examples``
  extra.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest

from centrali.cli import cli
from centrali.config import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", *DOCS.glob("*.md")])
RUN_MARK = "<!-- docs-test: run -->"

LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^(```|~~~)\s*([\w+-]*)\s*$")


def page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    run: bool

    @property
    def id(self) -> str:
        return f"{page_id(self.page)}:{self.line}"


def blocks(path: Path) -> Iterator[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i].strip())
        if not opening:
            i += 1
            continue
        fence, lang = opening.groups()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i])
            i += 1
        marked = start > 0 and lines[start - 1].strip() == RUN_MARK
        yield Block(path, start + 1, lang.lower(), "\n".join(body) + "\n", marked)
        i += 1


def prose(path: Path) -> str:
    """The page without its fenced blocks (links and headings live outside them)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    fenced = set()
    for block in blocks(path):
        fenced.update(range(block.line - 1, block.line + block.code.count("\n") + 1))
    return "\n".join(line for n, line in enumerate(lines) if n not in fenced)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation dropped, spaces
    to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in prose(path).splitlines():
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


PYTHON_BLOCKS = [block for page in PAGES for block in blocks(page) if block.lang == "python"]


def test_the_pages_exist() -> None:
    names = {page_id(page) for page in PAGES}
    expected = {
        "docs/http-api.md",
        "docs/configuration.md",
        "docs/cli.md",
        "docs/python-client.md",
        "docs/operations.md",
        "docs/scaling.md",
        "docs/security.md",
    }
    assert expected <= names


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_nothing_points_outside_the_repository(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), 1):
        assert "../" not in line, f"{page_id(page)}:{number}: {line}"
        assert not re.search(r"(?<![\w-])shared/", line), f"{page_id(page)}:{number}: {line}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_link_resolves(page: Path) -> None:
    problems = []
    for target in LINK.findall(prose(page)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        linked = page if not path_part else (page.parent / path_part).resolve()
        if not linked.is_relative_to(ROOT):
            problems.append(f"{target}: outside the repository")
            continue
        if not linked.exists():
            problems.append(f"{target}: no such file")
            continue
        if anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            problems.append(f"{target}: no heading #{anchor} in {page_id(linked)}")
    assert problems == [], f"{page_id(page)}: {problems}"


def test_the_readme_lists_every_page_of_docs() -> None:
    readme = prose(ROOT / "README.md")
    linked = {target.partition("#")[0] for target in LINK.findall(readme)}
    missing = [page_id(p) for p in sorted(DOCS.glob("*.md")) if page_id(p) not in linked]
    assert missing == []


def test_the_readme_still_starts_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("```sh")
    assert lines[start + 1].startswith(
        "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/centrali serve"
    )
    assert lines[start + 2].startswith(".ci/run ")


# --- the code blocks ------------------------------------------------------------------------


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda b: b.id)
def test_python_block_compiles(block: Block) -> None:
    compile(block.code, block.id, "exec")


def _imported(tree: ast.Module) -> list[ast.stmt]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda b: b.id)
def test_python_block_imports_work(block: Block) -> None:
    tree = ast.parse(block.code)
    namespace: dict[str, Any] = {}
    for node in _imported(tree):
        code = compile(ast.Module(body=[node], type_ignores=[]), block.id, "exec")
        exec(code, namespace)  # raises ImportError for a name the package does not export


def _from_centrali(value: Any) -> bool:
    module = getattr(value, "__module__", "") or ""
    return module == "centrali" or module.startswith("centrali.")


def _bind(target: Any, call: ast.Call, where: str) -> None:
    if any(isinstance(arg, ast.Starred) for arg in call.args) or any(
        keyword.arg is None for keyword in call.keywords
    ):
        return  # *args / **kwargs: nothing to say statically
    signature = inspect.signature(target)
    try:
        signature.bind(
            *call.args, **{keyword.arg: None for keyword in call.keywords if keyword.arg}
        )
    except TypeError as exc:
        raise AssertionError(f"{where}: {ast.unparse(call)}: {exc}") from None


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda b: b.id)
def test_python_block_calls_fit_the_real_signatures(block: Block) -> None:
    tree = ast.parse(block.code)
    namespace: dict[str, Any] = {}
    for node in _imported(tree):
        exec(compile(ast.Module(body=[node], type_ignores=[]), block.id, "exec"), namespace)
    known = {name: value for name, value in namespace.items() if _from_centrali(value)}
    instances: dict[str, type] = {}  # variable -> the centrali class it was made from

    def made_by(value: ast.expr) -> type | None:
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
            made = known.get(value.func.id)
            if inspect.isclass(made):
                return made
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            if isinstance(node.targets[0], ast.Name) and (cls := made_by(node.value)):
                instances[node.targets[0].id] = cls
        elif isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                if isinstance(item.optional_vars, ast.Name) and (cls := made_by(item.context_expr)):
                    instances[item.optional_vars.id] = cls
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        where = f"{block.id} (+{node.lineno})"
        if isinstance(node.func, ast.Name) and node.func.id in known:
            target = known[node.func.id]
            if callable(target):
                _bind(target, node, where)
        elif (
            isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in instances
        ):
            cls = instances[node.func.value.id]
            method = getattr(cls, node.func.attr, None)
            assert method is not None, f"{where}: {cls.__name__} has no {node.func.attr}"
            _bind(getattr(cls(*_placeholder_args(cls)), node.func.attr), node, where)


def _placeholder_args(cls: type) -> tuple[Any, ...]:
    """Arguments that build an instance without touching the network, to get bound methods."""
    if cls.__name__ in {"CentraliClient", "AsyncCentraliClient"}:
        return ("ci_x", "sk_x", "ws")
    if cls.__name__ in {"TokenProvider", "AsyncTokenProvider", "CentraliAuth"}:
        return ("ci_x", "sk_x", "http://127.0.0.1:1/oidc/token")
    if cls.__name__ == "TokenVerifier":
        return ("http://127.0.0.1:1",)
    return ()


RUN_BLOCKS = [block for block in PYTHON_BLOCKS if block.run]


def test_some_blocks_are_marked_to_run() -> None:
    assert len(RUN_BLOCKS) >= 3


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=lambda b: b.id)
def test_marked_python_block_runs(block: Block, capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(block.code, block.id, "exec"), {"__name__": "__docs__"})


# --- settings, commands, examples ---------------------------------------------------------


def test_configuration_names_every_setting() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    missing = [
        f"CENTRALI_{name.upper()}"
        for name in Settings.model_fields
        if f"`CENTRALI_{name.upper()}`" not in text
    ]
    assert missing == []


def _commands(group: click.Group, prefix: str) -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        path = f"{prefix} {name}"
        yield path, command
        if isinstance(command, click.Group):
            yield from _commands(command, path)


def test_cli_page_names_every_command_and_option() -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    missing = []
    for path, command in _commands(cli, "centrali"):
        if f"`{path}" not in text:
            missing.append(path)
        for param in command.params:
            for option in getattr(param, "opts", []):
                if option.startswith("--") and option not in text:
                    missing.append(f"{path} {option}")
    for option in ("--version", "--help"):
        assert option in text
    assert missing == []


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in _imported(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s\[<>=!~;]", line, maxsplit=1)[0].lower() for line in requirements}


def test_examples_import_only_what_the_package_or_its_examples_extra_installs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    installed = _requirement_names(project["dependencies"]) | _requirement_names(
        project["optional-dependencies"]["examples"]
    )
    # Import names of the distributions that differ from them, and what they bring along.
    installed |= {"centrali", "jwt", "starlette", "pydantic"}
    for example in sorted((ROOT / "examples").glob("*.py")):
        third_party = {
            name
            for name in _top_level_imports(example)
            if name not in sys.stdlib_module_names and name != "__future__"
        }
        assert third_party <= installed, (example.name, sorted(third_party - installed))
