"""File name → language, the one table the scanner, splitter and search filters share."""

from __future__ import annotations

#: Extension (lower case, with the dot) → language name. The name is also the tree-sitter
#: grammar name where one exists (see codectxd.splitter.grammars).
EXTENSION_LANGUAGE: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".pyw": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".hxx": "cpp",
    ".ipp": "cpp",
    ".inl": "cpp",
    ".cs": "csharp",
    ".rb": "ruby",
    ".rake": "ruby",
    ".gemspec": "ruby",
    ".php": "php",
    ".kt": "kotlin",
    ".kts": "kotlin",
    ".swift": "swift",
    ".scala": "scala",
    ".sc": "scala",
    ".lua": "lua",
    ".sh": "bash",
    ".bash": "bash",
    ".zsh": "bash",
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdx": "markdown",
    ".rst": "rst",
    ".txt": "text",
    ".adoc": "text",
    ".json": "json",
    ".jsonc": "json",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".toml": "toml",
    ".ini": "ini",
    ".cfg": "ini",
    ".html": "html",
    ".htm": "html",
    ".css": "css",
    ".scss": "scss",
    ".less": "css",
    ".vue": "vue",
    ".svelte": "svelte",
    ".sql": "sql",
    ".dart": "dart",
    ".ex": "elixir",
    ".exs": "elixir",
    ".erl": "erlang",
    ".hrl": "erlang",
    ".hs": "haskell",
    ".ml": "ocaml",
    ".mli": "ocaml",
    ".zig": "zig",
    ".r": "r",
    ".jl": "julia",
    ".pl": "perl",
    ".pm": "perl",
    ".m": "objc",
    ".mm": "objc",
    ".clj": "clojure",
    ".cljs": "clojure",
    ".groovy": "groovy",
    ".gradle": "groovy",
    ".proto": "proto",
    ".graphql": "graphql",
    ".gql": "graphql",
    ".tf": "hcl",
    ".hcl": "hcl",
    ".nix": "nix",
    ".vim": "vim",
    ".el": "elisp",
    ".fs": "fsharp",
    ".fsx": "fsharp",
    ".cmake": "cmake",
    ".xml": "xml",
    ".ipynb": "json",
}
#: Files recognised by name rather than extension.
FILENAME_LANGUAGE: dict[str, str] = {
    "Makefile": "make",
    "makefile": "make",
    "GNUmakefile": "make",
    "Dockerfile": "dockerfile",
    "Containerfile": "dockerfile",
    "CMakeLists.txt": "cmake",
    "Rakefile": "ruby",
    "Gemfile": "ruby",
    "Jenkinsfile": "groovy",
    "BUILD": "starlark",
    "BUILD.bazel": "starlark",
    "WORKSPACE": "starlark",
    "README": "text",
    "LICENSE": "text",
}


def language_for(path: str, extra_extensions: tuple[str, ...] = ()) -> str | None:
    """The language of a repository-relative path, or None when we do not index that kind.

    >>> language_for("src/app/main.tsx")
    'tsx'
    """
    name = path.rpartition("/")[2]
    if name in FILENAME_LANGUAGE:
        return FILENAME_LANGUAGE[name]
    if name.startswith("Dockerfile."):
        return "dockerfile"
    suffix = _suffix(name).lower()
    if suffix in EXTENSION_LANGUAGE:
        return EXTENSION_LANGUAGE[suffix]
    if suffix and (suffix in extra_extensions or suffix.lstrip(".") in extra_extensions):
        return "text"
    return None


def extension_of(path: str) -> str:
    """The lower-case extension without the dot ('' when there is none)."""
    return _suffix(path.rpartition("/")[2]).lower().lstrip(".")


def _suffix(name: str) -> str:
    """`PurePosixPath(name).suffix` without building a path (the scan asks for every file)."""
    dot = name.rfind(".")
    return name[dot:] if 0 < dot < len(name) - 1 else ""
