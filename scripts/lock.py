"""Write constraints.txt: the exact version of every package the README's install block installs.

constraints.txt is made only by this script, never by hand. Run it in the environment where
``python -m pytest -q`` just passed::

    python scripts/lock.py            # rewrite constraints.txt from this environment
    python scripts/lock.py --check    # exit 1 (and print the difference) where constraints.txt is out of date

What it pins: the requirements named by the README's ``<!-- ci:install -->`` block (``torch==...``,
``-e ".[dev]"``, any package added there later), the project's own requirements and extras read from this
checkout's pyproject.toml, and everything those require, transitively, as installed here (markers evaluated
for this Python and platform); a package installed with ``--no-deps`` is pinned without what it declares.
Each line is ``name==version``; the project itself is not pinned. Packages in
the environment that nothing installed by the README needs (pip, other tools) are left out and listed on
stderr. It fails, naming the package, where a required package is missing or its installed version does not
satisfy a requirement: install with the README's commands first.

To move a dependency on purpose: edit pyproject.toml (or the README's pins), delete the package's line from
constraints.txt, ``pip install -c constraints.txt -U NAME`` (or the README's install commands in a fresh venv),
run the suite, then run this script. Adding a package to an extra or to the README's install block needs only
the last three steps.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.metadata as metadata
import platform
import re
import shlex
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- ci:install -->"
# pip options that take a value (the value is not a requirement); -r and -e are read, not skipped.
VALUE_OPTIONS = {"-c", "--constraint", "-i", "--index-url", "--extra-index-url", "-f", "--find-links",
                 "-t", "--target", "--prefix", "--root", "--platform", "--python-version", "--src"}


def install_block(readme: Path) -> str:
    """The first ```bash block after the ci:install marker (the commands .ci/run installs with)."""
    lines = readme.read_text().splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if MARKER in line)
        begin = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```bash"))
        end = next(i for i in range(begin + 1, len(lines)) if lines[i].startswith("```"))
    except StopIteration:
        sys.exit(f"{readme}: no ```bash block after {MARKER}")
    return "\n".join(lines[begin + 1 : end])


def pip_install_arguments(block: str) -> list[list[str]]:
    """The arguments after ``pip install`` of every pip install command in a shell snippet."""
    commands: list[list[str]] = []
    for line in block.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        commands.append([])
        for token in lexer:
            if token in {"&&", "||", ";", "|", "&"}:
                commands.append([])
            else:
                commands[-1].append(token)
    found = []
    for words in commands:  # `pip install ...` or `python -m pip install ...`
        if words[:1] and re.fullmatch(r"(.*/)?python[0-9.]*", words[0]) and words[1:3] == ["-m", "pip"]:
            words = words[2:]
        if words[:1] and re.fullmatch(r"(.*/)?pip[0-9.]*", words[0]) and words[1:2] == ["install"]:
            found.append(words[2:])
    return found


def roots(block: str, project_name: str) -> list[tuple[Requirement, bool]]:
    """(requirement, its own requirements installed too) for each one the install block names.

    ``.[extras]`` / ``-e .[extras]`` become ``project[extras]``; a command with ``--no-deps`` installs only
    what it names, so only that is pinned.
    """
    out: list[tuple[Requirement, bool]] = []
    for args in pip_install_arguments(block):
        found: list[Requirement] = []
        words = iter(args)
        for word in words:
            if word in VALUE_OPTIONS:
                next(words, None)
            elif word in {"-r", "--requirement"}:
                lines = (ROOT / next(words)).read_text().splitlines()
                found += [Requirement(x.split("#")[0]) for x in lines if x.split("#")[0].strip() and not x.startswith("-")]
            elif word in {"-e", "--editable"} or not word.startswith("-"):
                target = next(words) if word.startswith("-") else word
                path, extras = re.fullmatch(r"([^\[]*)(\[.*\])?", target).groups()
                if path and (ROOT / path).resolve() == ROOT:
                    found.append(Requirement(f"{project_name}{extras or ''}"))
                else:
                    found.append(Requirement(target))
        out += [(req, "--no-deps" not in args) for req in found]
    if not out:
        sys.exit(f"README.md's {MARKER} block names no `pip install` requirements")
    return out


def applies(req: Requirement, extras: set[str] | frozenset[str] = frozenset()) -> bool:
    """True where ``req``'s marker holds here, for a package requested with ``extras``."""
    return req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ["", *sorted(extras)])


def closure(start: list[tuple[Requirement, bool]], project: dict) -> tuple[dict[str, str], list[str]]:
    """{name: version} of everything ``start`` needs as installed here (the project excluded), and problems.

    ``start`` holds (requirement, walk): where walk is False the package is pinned but not what it requires.
    """
    name = canonicalize_name(project["name"])
    pinned: dict[str, str] = {}
    problems: list[str] = []
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(req, "README install block", walk) for req, walk in start if applies(req)]
    while todo:
        req, wanted_by, walk = todo.pop()
        key = canonicalize_name(req.name)
        if (key, frozenset(req.extras)) in seen:
            continue
        seen.add((key, frozenset(req.extras)))
        if key == name:  # this checkout's requirements, not the installed metadata (which may be older)
            lines = list(project.get("dependencies", []))
            for extra in req.extras:
                lines += project.get("optional-dependencies", {}).get(extra, [])
            wanted_by = f"{name}[{','.join(sorted(req.extras))}]"
            todo += [(sub, wanted_by, True) for sub in map(Requirement, lines) if applies(sub)]
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{req.name} (required by {wanted_by}) is not installed")
            continue
        if not req.specifier.contains(dist.version, prereleases=True):
            problems.append(f"{dist.metadata['Name']} {dist.version} does not satisfy {req} (from {wanted_by})")
        pinned[dist.metadata["Name"]] = dist.version
        subs = map(Requirement, dist.requires or []) if walk else []
        todo += [(sub, f"{dist.metadata['Name']} {dist.version}", True) for sub in subs if applies(sub, req.extras)]
    return pinned, problems


def render(pinned: dict[str, str]) -> str:
    header = (f"# Exact versions the suite passed with: Python {platform.python_version()}, "
              f"{platform.system()} {platform.machine()}.\n"
              "# Made by `python scripts/lock.py` from the README's install block; do not edit by hand.\n")
    return header + "".join(f"{n}=={pinned[n]}\n" for n in sorted(pinned, key=canonicalize_name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with constraints.txt instead of writing it")
    parser.add_argument("--output", type=Path, default=ROOT / "constraints.txt", help="default: %(default)s")
    args = parser.parse_args(argv)

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned, problems = closure(roots(install_block(ROOT / "README.md"), project["name"]), project)
    if problems:
        print("this environment is not the README's install; install with its commands first:", file=sys.stderr)
        print("".join(f"  {p}\n" for p in sorted(problems)), end="", file=sys.stderr)
        return 1
    text = render(pinned)
    if args.check:
        old = args.output.read_text() if args.output.exists() else ""
        diff = list(difflib.unified_diff(old.splitlines()[2:], text.splitlines()[2:], str(args.output), "this env",
                                         n=0, lineterm=""))
        print("\n".join(diff) or f"{args.output} matches this environment")
        return 1 if diff else 0
    args.output.write_text(text)
    wanted = {canonicalize_name(n) for n in pinned}
    left_out = sorted(d.metadata["Name"] for d in metadata.distributions()
                      if canonicalize_name(d.metadata["Name"]) not in wanted | {canonicalize_name(project["name"])})
    print(f"wrote {args.output}: {len(pinned)} packages", file=sys.stderr)
    print(f"left out (not needed by the README's install): {', '.join(left_out) or 'none'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
