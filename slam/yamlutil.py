"""YAML text to plain data, with every way PyYAML can fail turned into one SlamInputError naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from slam.errors import SlamInputError


def parse_yaml(text: str, source: str | Path, first_line: int = 1) -> Any:
    """yaml.safe_load(text); `first_line` is the file line the text starts on (for the message).

    Besides YAMLError, PyYAML's constructors raise ValueError for impossible dates or a bad `!!float`,
    and deep nesting exhausts the recursion limit: all are bad input, none should reach the user raw.
    """
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + first_line}" if mark is not None else ""
        raise SlamInputError(f"invalid YAML{where}", source) from None
    except (ValueError, TypeError, OverflowError) as exc:
        raise SlamInputError(f"invalid YAML value: {exc}", source) from None
    except RecursionError:
        raise SlamInputError("invalid YAML: nested too deeply", source) from None
