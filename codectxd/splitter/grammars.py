"""Per-language knowledge for the AST splitter: which nodes are definitions, and their names.

Grammars come from tree-sitter-language-pack 0.x, which bundles them in its wheel (the 1.x line
downloads grammars on first use, which fails offline).
"""

from __future__ import annotations

import threading
from typing import Any

from tree_sitter import Node, Parser

_FUNCTION, _METHOD, _CLASS, _TYPE, _MODULE = "function", "method", "class", "type", "module"

_JS_DEFS = {
    "function_declaration": _FUNCTION,
    "generator_function_declaration": _FUNCTION,
    "class_declaration": _CLASS,
    "abstract_class_declaration": _CLASS,
    "method_definition": _METHOD,
    "interface_declaration": _TYPE,
    "type_alias_declaration": _TYPE,
    "enum_declaration": _TYPE,
    "internal_module": _MODULE,
    "module": _MODULE,
}

#: language → {node type: kind}. Kinds: function, method, class, type, module.
DEFINITIONS: dict[str, dict[str, str]] = {
    "python": {"function_definition": _FUNCTION, "class_definition": _CLASS},
    "javascript": _JS_DEFS,
    "typescript": _JS_DEFS,
    "tsx": _JS_DEFS,
    "go": {
        "function_declaration": _FUNCTION,
        "method_declaration": _METHOD,
        "type_declaration": _TYPE,
    },
    "rust": {
        "function_item": _FUNCTION,
        "impl_item": _CLASS,
        "struct_item": _TYPE,
        "enum_item": _TYPE,
        "union_item": _TYPE,
        "trait_item": _TYPE,
        "mod_item": _MODULE,
        "macro_definition": _FUNCTION,
    },
    "java": {
        "class_declaration": _CLASS,
        "interface_declaration": _TYPE,
        "enum_declaration": _TYPE,
        "record_declaration": _CLASS,
        "annotation_type_declaration": _TYPE,
        "method_declaration": _METHOD,
        "constructor_declaration": _METHOD,
    },
    "c": {
        "function_definition": _FUNCTION,
        "struct_specifier": _TYPE,
        "enum_specifier": _TYPE,
        "union_specifier": _TYPE,
    },
    "cpp": {
        "function_definition": _FUNCTION,
        "class_specifier": _CLASS,
        "struct_specifier": _TYPE,
        "enum_specifier": _TYPE,
        "union_specifier": _TYPE,
        "namespace_definition": _MODULE,
    },
    "csharp": {
        "class_declaration": _CLASS,
        "struct_declaration": _TYPE,
        "interface_declaration": _TYPE,
        "enum_declaration": _TYPE,
        "record_declaration": _CLASS,
        "method_declaration": _METHOD,
        "constructor_declaration": _METHOD,
        "property_declaration": _METHOD,
        "namespace_declaration": _MODULE,
    },
    "ruby": {"method": _METHOD, "singleton_method": _METHOD, "class": _CLASS, "module": _MODULE},
    "php": {
        "function_definition": _FUNCTION,
        "class_declaration": _CLASS,
        "interface_declaration": _TYPE,
        "trait_declaration": _TYPE,
        "enum_declaration": _TYPE,
        "method_declaration": _METHOD,
    },
    "kotlin": {
        "function_declaration": _FUNCTION,
        "class_declaration": _CLASS,
        "object_declaration": _CLASS,
    },
    "swift": {
        "function_declaration": _FUNCTION,
        "class_declaration": _CLASS,
        "protocol_declaration": _TYPE,
        "init_declaration": _METHOD,
    },
    "scala": {
        "function_definition": _FUNCTION,
        "class_definition": _CLASS,
        "object_definition": _CLASS,
        "trait_definition": _TYPE,
    },
    "lua": {"function_declaration": _FUNCTION},
    "bash": {"function_definition": _FUNCTION},
    "dart": {"class_definition": _CLASS, "function_signature": _FUNCTION},
    "elixir": {},
    "haskell": {"function": _FUNCTION},
    "zig": {"function_declaration": _FUNCTION},
    "ocaml": {"value_definition": _FUNCTION, "module_definition": _MODULE},
}
#: Nodes that wrap one definition (decorators, export, templates): named after what they wrap.
WRAPPERS = frozenset(
    {
        "decorated_definition",
        "export_statement",
        "template_declaration",
        "ambient_declaration",
    }
)
#: JS/TS declarations that define a function when their value is one (`const f = () => ...`).
VARIABLE_DECLARATIONS = frozenset({"lexical_declaration", "variable_declaration"})
JS_LANGUAGES = frozenset({"javascript", "typescript", "tsx"})
_FUNCTION_VALUES = frozenset(
    {
        "arrow_function",
        "function_expression",
        "function",
        "generator_function",
        "class",
    }
)
_NAME_NODE_TYPES = frozenset(
    {
        "identifier",
        "simple_identifier",
        "type_identifier",
        "field_identifier",
        "property_identifier",
        "constant",
        "name",
        "namespace_identifier",
        "word",
        "qualified_identifier",
        "scoped_identifier",
        "dot_index_expression",
        "operator_name",
        "destructor_name",
        "scope_resolution",
    }
)
_COMMENT_TYPES = frozenset({"comment", "line_comment", "block_comment", "doc_comment"})

_local = threading.local()


def has_grammar(language: str) -> bool:
    """Whether the AST splitter handles this language (otherwise: line splitter)."""
    return language in DEFINITIONS


def parser_for(language: str) -> Parser:
    """A parser for `language`, one per thread (tree-sitter parsers are not thread-safe)."""
    parsers: dict[str, Parser] | None = getattr(_local, "parsers", None)
    if parsers is None:
        parsers = _local.parsers = {}
    parser = parsers.get(language)
    if parser is None:
        from tree_sitter_language_pack import get_parser

        parser = parsers[language] = get_parser(language)  # type: ignore[arg-type]
    return parser


def is_comment(node: Node) -> bool:
    return node.type in _COMMENT_TYPES


def definition_of(node: Node, language: str) -> tuple[str, str] | None:
    """(name, kind) when `node` defines a symbol in `language`, else None."""
    table = DEFINITIONS.get(language, {})
    if node.type in WRAPPERS:
        for child in node.named_children:
            inner = definition_of(child, language)
            if inner is not None:
                return inner
        return None
    if node.type == "expression_statement" and language in JS_LANGUAGES:
        # `app.init = function init() {...}`, `exports.send = (res) => ...`, CommonJS style.
        expression = node.named_children[0] if node.named_child_count else None
        if expression is not None and expression.type == "assignment_expression":
            right = expression.child_by_field_name("right")
            left = expression.child_by_field_name("left")
            if right is not None and left is not None and right.type in _FUNCTION_VALUES:
                return _text(left), _FUNCTION
        return None
    if node.type in VARIABLE_DECLARATIONS and language in JS_LANGUAGES:
        declarators = [c for c in node.named_children if c.type == "variable_declarator"]
        if len(declarators) == 1:
            value = declarators[0].child_by_field_name("value")
            if value is not None and value.type in _FUNCTION_VALUES:
                return _name_of(declarators[0]), _FUNCTION
        return None
    kind = table.get(node.type)
    if kind is None:
        return None
    return _name_of(node), kind


def _name_of(node: Node) -> str:
    name = node.child_by_field_name("name")
    if name is None and node.type == "type_declaration":  # Go: type X struct{...}
        spec = next((c for c in node.named_children if c.type == "type_spec"), None)
        name = spec.child_by_field_name("name") if spec is not None else None
    if name is None and node.type == "impl_item":  # Rust: impl Trait for Type
        trait, target = node.child_by_field_name("trait"), node.child_by_field_name("type")
        if target is not None:
            label = _text(target)
            return f"{_text(trait)} for {label}" if trait is not None else label
    if name is None:
        name = _declarator_name(node)
    if name is None:
        name = next((c for c in node.named_children if c.type in _NAME_NODE_TYPES), None)
    return _text(name) if name is not None else ""


def _declarator_name(node: Node) -> Node | None:
    """C/C++: the identifier at the bottom of the declarator chain of a function definition."""
    current: Node | None = node.child_by_field_name("declarator")
    for _ in range(8):
        if current is None:
            return None
        if current.type in _NAME_NODE_TYPES:
            return current
        nxt = current.child_by_field_name("declarator") or current.child_by_field_name("name")
        if nxt is None:
            nxt = next((c for c in current.named_children if c.type in _NAME_NODE_TYPES), None)
        current = nxt
    return None


def _text(node: Any) -> str:
    raw = node.text or b""
    return raw.decode("utf-8", "replace").strip()[:200]
