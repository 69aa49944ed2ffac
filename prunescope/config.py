"""Config validation with messages a user can act on.

The JSON Schema in ``config/schema.yaml`` is the single description of every key. jsonschema's own
messages quote whole sub-documents; here each error names the offending key path, the value, and what
the schema allows (its enum, pattern description or property list), and all errors are reported at
once. Checks the schema cannot express (N:M with N >= M) follow. Snakemake's own ``validate`` then fills
the defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from .variants import VariantError, parse_variant


class ConfigError(ValueError):
    """An invalid configuration; the message lists every problem found."""


def load_schema(path: str | Path) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


def check_config(config: dict[str, Any], schema: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` listing every problem of ``config``; return None when it is valid."""
    validator = Draft202012Validator(schema)
    problems = [_describe(error) for error in sorted(validator.iter_errors(config), key=lambda e: list(e.path))]
    if not problems:
        for i, name in enumerate(config.get("variants", [])):
            try:
                parse_variant(name)
            except VariantError as err:
                problems.append(f"variants[{i}]: {err}")
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(dict.fromkeys(problems)))


def _key_path(path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<top level>"


def _describe(error) -> str:
    where = _key_path(error.absolute_path)
    schema = error.schema
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return f"{where}: unknown key(s) {', '.join(map(repr, extra))}; allowed: {', '.join(allowed)}"
    if error.validator == "required":
        missing = error.message.split("'")[1]
        hint = schema.get("properties", {}).get(missing, {}).get("description", "")
        return f"{where}: missing required key {missing!r}" + (f" ({hint})" if hint else "")
    if error.validator == "enum":
        return f"{where}: {error.instance!r} is not allowed; allowed: {', '.join(map(str, schema['enum']))}"
    if error.validator == "pattern":
        parent = error.parent.schema if error.parent is not None else {}
        what = schema.get("description") or parent.get("description") or f"values matching {schema['pattern']}"
        return f"{where}: {error.instance!r} is not allowed; allowed: {what}"
    if error.validator == "type":
        return f"{where}: {error.instance!r} has the wrong type; expected {schema['type']}"
    if error.validator in ("anyOf", "oneOf"):
        return f"{where}: {error.instance!r} is not allowed; allowed: {schema.get('description', error.message)}"
    if error.validator == "minProperties":
        return f"{where}: at least one entry is required"
    return f"{where}: {error.message}"


def canonical(value: Any) -> Any:
    """``value`` with every mapping's keys sorted, recursively (lists keep their order).

    Snakemake compares a job's params by their ``repr``; a dict's repr follows its key order, so the same
    settings written in another YAML order would look changed and rerun the job.
    """
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [canonical(item) for item in value]
    return value
