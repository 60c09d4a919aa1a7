"""Refusals are checked for the facts their message must carry — the name, the value, the fix — in any wording and
order, so a message can be reworded without breaking a test, but not lose what the user needs to know."""

import re


def facts(*words: str) -> str:
    """A pattern for `pytest.raises(match=...)` that matches a message containing every one of `words`, anywhere."""
    return "(?s)" + "".join(f"(?=.*{re.escape(w)})" for w in words)
