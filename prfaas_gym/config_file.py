"""Reading the project's YAML files (scenarios, profiles, training configs) with one set of rules.

:func:`read_config_text` reads a file as UTF-8 text (:func:`read_named_config` finds it by
path or shipped name); :func:`parse_config_yaml` parses it. Both
raise :class:`PrfaasInputError` naming the file (and line, where there is one), never a YAML or
OS traceback. YAML itself keeps the last of two equal keys in a mapping and drops the first
without a word (two ``link:`` sections, say), so a repeated key is refused here. YAML 1.1 reads
``1e-3`` (no decimal point) as a string; :func:`yaml_string_hint` says so in errors.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from prfaas_gym.errors import PrfaasInputError

_MERGE_TAG = "tag:yaml.org,2002:merge"


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key given twice in one YAML mapping."""

    def __init__(self, key: object, first: yaml.Node, again: yaml.Node) -> None:
        self.key = key
        self.first_line, self.line = first.start_mark.line + 1, again.start_mark.line + 1
        super().__init__(None, None, f"duplicate key {key!r}", again.start_mark)


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key repeated in one mapping, as written: a ``<<``
    merge may still be overridden, as YAML intends."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._checked: set[int] = set()

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        # SafeLoader calls this on every mapping (and every merged one) before building it,
        # and rewrites the node in place with the merged keys: check a node's own keys once,
        # on the first call, before that rewrite
        if id(node) not in self._checked:
            self._checked.add(id(node))
            self._refuse_repeated_keys(node)
        super().flatten_mapping(node)

    def _refuse_repeated_keys(self, node: yaml.MappingNode) -> None:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader's own error follows
                continue
            if first is not None:
                raise DuplicateKeyError(key, first, key_node)
            seen[key] = key_node


def parse_config_yaml(text: str, where: str | Path) -> Any:
    """The data of YAML ``text`` read from ``where``.

    PrfaasInputError for invalid YAML (with its line and column), a key repeated in one
    mapping (with both lines), an integer too long for Python to read, or nesting too deep.
    """
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except DuplicateKeyError as e:
        raise PrfaasInputError(f"key {e.key!r} is given twice (first on line {e.first_line}); "
                               "YAML would silently keep only the last, so remove one",
                               f"{where}:{e.line}") from None
    except yaml.MarkedYAMLError as e:
        raise PrfaasInputError(f"invalid YAML: {_yaml_problem(e)}", where) from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow; no mark
        before = text[:e.position]
        line, column = before.count("\n") + 1, e.position - (before.rfind("\n") + 1) + 1
        code = e.character if isinstance(e.character, int) else ord(e.character[:1] or "\0")
        raise PrfaasInputError(f"invalid YAML: character U+{code:04X} is not allowed "
                               f"({e.reason}) at line {line}, column {column}", where) from None
    except (yaml.YAMLError, ValueError, RecursionError) as e:
        # ValueError: an integer of over 4300 digits; RecursionError: nesting too deep
        raise PrfaasInputError(f"invalid YAML ({e})", where) from None


def _yaml_problem(e: yaml.MarkedYAMLError) -> str:
    """PyYAML's error on one line: the problem and where (1-based), then the construct it
    was reading and where that began; PyYAML's own text spans several lines with a quote of
    the source and names the input "<unicode string>"."""
    def at(mark: Any) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    text = e.problem or "unreadable"
    if e.problem_mark is not None:
        text += f" at {at(e.problem_mark)}"
    if e.context:
        text += f" ({e.context}" + (f" at {at(e.context_mark)}" if e.context_mark else "") + ")"
    return text


def read_named_config(name_or_path: str | Path, what: str, shipped_kind: str,
                      shipped_dir: Traversable, names: Callable[[], list[str]]
                      ) -> tuple[str, Path | None]:
    """``(text, path)`` of the ``what`` YAML given as a path, or as the bare name of one of
    the ``shipped_kind`` files in ``shipped_dir`` (then ``path`` is None).

    A ``.yaml``/``.yml`` name or an existing file is a path. Otherwise a bare name (no folder
    in it) that is shipped wins over a folder of that name in the working directory; any
    other existing path is read as given (a folder: a clear error). PrfaasInputError for an
    empty name and an unknown one (listing ``names()``), and :func:`read_config_text`'s.
    """
    if str(name_or_path).strip() == "":
        raise PrfaasInputError(f"the {what} name or path is empty; {shipped_kind}s: {names()}")
    p = Path(name_or_path)
    # only a bare name can be a shipped one ("/abs/dir" must not find "/abs/dir.yaml")
    shipped = shipped_dir / f"{p.name}.yaml" if str(p) == p.name else None
    is_shipped = shipped is not None and shipped.is_file()
    if p.suffix in (".yaml", ".yml") or p.is_file() or (p.exists() and not is_shipped):
        return read_config_text(p, what), p
    if shipped is None or not is_shipped:
        raise PrfaasInputError(f"unknown {shipped_kind} {str(name_or_path)!r}; "
                               f"{shipped_kind}s: {names()} (or a path to a YAML file)")
    return shipped.read_text(), None


def read_config_text(p: Path, what: str) -> str:
    """The text of the ``what`` (e.g. ``"profile"``) YAML file ``p``, decoded as UTF-8.

    PrfaasInputError for a missing file, a directory, an unreadable file or bytes that are
    not UTF-8 text (a binary file).
    """
    if not p.exists():
        raise PrfaasInputError(f"{what} file not found", p)
    if p.is_dir():
        raise PrfaasInputError(f"is a directory, not a {what} YAML file", p)
    if not p.is_file():
        raise PrfaasInputError(f"is not a regular file, so not a {what} YAML file", p)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise PrfaasInputError(f"cannot read the {what} file ({e.strerror or e})", p) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise PrfaasInputError(f"not a {what} YAML file: not UTF-8 text ({e.reason} at byte "
                               f"{e.start})", f"{p}:{line}") from None


def yaml_string_hint(v: object) -> str:
    """For a number read as a string, the hint to append to an error message: YAML 1.1
    reads an exponent form without a decimal point or without a signed exponent (``1e-8``,
    ``1.0e9``) as one, and a quoted ``"4"`` is one; otherwise ``""``."""
    if not isinstance(v, str):
        return ""
    head = v.strip().lstrip("+-")[:1]
    if not (head.isdigit() or head == "."):
        return ""
    try:
        float(v)
    except ValueError:
        return ""
    mantissa, e, exponent = v.strip().lower().partition("e")
    if not e:  # YAML reads 4 and 4.5 as numbers: this one was quoted
        return " (a string: write the number without quotes)"
    if exponent[:1] not in ("+", "-"):
        exponent = "+" + exponent
    fixed = (mantissa if "." in mantissa else mantissa + ".0") + e + exponent
    if fixed == v.strip().lower():  # already a YAML number: this one was quoted
        return " (a string: write the number without quotes)"
    return (" (a string: YAML reads an exponent without a decimal point or a signed exponent "
            f"as one; write {fixed})")
