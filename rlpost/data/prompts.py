"""Turn a record into the prompt string given to the policy."""
from __future__ import annotations

import string
from typing import Any

from rlpost.data.errors import DataError

DEFAULT_TEMPLATE = "{question}"


def template_columns(template: str) -> set[str]:
    """Columns a ``str.format`` template reads, so callers can validate data before loading models."""
    columns = set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise DataError(f"prompt template {template!r} is not a valid format string ({e})") from None
    for _, field, _, _ in parsed:
        if field is None:
            continue
        name = field.split(".", 1)[0].split("[", 1)[0]
        if name == "" or name.isdigit():
            raise DataError(f"prompt template {template!r} uses a positional field; name a column, e.g. {{question}}")
        columns.add(name)
    return columns


def render_template(template: str, record: dict[str, Any]) -> str:
    """``template.format(**record)``, with a DataError naming any column the record lacks."""
    for col in sorted(template_columns(template)):
        if col not in record:
            present = ", ".join(record) or "none"
            raise DataError(f"prompt template {template!r} needs column '{col}' (record has: {present})")
    try:
        return template.format(**record)
    except (KeyError, IndexError, AttributeError, ValueError) as e:
        raise DataError(f"prompt template {template!r} cannot be filled from the record ({e})") from None


def format_prompt(
    record: dict[str, Any],
    tokenizer: Any,
    template: str | None = None,
    use_chat_template: bool | None = None,
    system_prompt: str | None = None,
) -> str:
    """Render the prompt for ``record``.

    With a chat template (``use_chat_template`` True, or None and the tokenizer has one) the rendered
    template becomes the user turn, after an optional system turn, with the generation prompt added.
    Otherwise the rendered template is the prompt, preceded by ``system_prompt`` and a newline if given.
    A record's own ``system`` column (e.g. GroupRank's rubric) is the system prompt when the recipe sets none.
    """
    content = render_template(template or DEFAULT_TEMPLATE, record)
    system_prompt = system_prompt or record.get("system")
    has_chat_template = bool(getattr(tokenizer, "chat_template", None))
    if use_chat_template is None:
        use_chat_template = has_chat_template
    if not use_chat_template:
        return f"{system_prompt}\n{content}" if system_prompt else content
    if not has_chat_template:
        raise DataError("use_chat_template=True but the tokenizer has no chat_template; set use_chat_template=False")
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": content})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
