"""One kept answer → one fine-tuning example, in the chosen format.

* ``messages`` (default): ``{"messages": [system?, user, assistant]}`` and no other key — the
  chat format of OpenAI's and Nebius's fine-tuning APIs and of TRL's ``SFTTrainer``;
* ``prompt_completion``: ``{"prompt": ..., "completion": ...}`` with strings (TRL's standard
  prompt-completion format); the system message, when there is one, opens the prompt.
"""

from __future__ import annotations

from typing import Any


def messages_example(system: str | None, user: str, answer: str) -> dict[str, Any]:
    head = [{"role": "system", "content": system}] if system is not None else []
    return {"messages": [*head, {"role": "user", "content": user},
                         {"role": "assistant", "content": answer}]}


def prompt_completion_example(system: str | None, user: str, answer: str) -> dict[str, Any]:
    prompt = f"{system}\n\n{user}" if system is not None else user
    return {"prompt": prompt, "completion": answer}


EXAMPLE_FORMATS = {"messages": messages_example, "prompt_completion": prompt_completion_example}
