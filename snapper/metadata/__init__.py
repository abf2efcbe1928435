"""Docker metadata read offline from files, one module per source.

Every reader returns ``(rows, errors)``: rows are dicts keyed by the columns of its table in
``snapper.schema``; errors are ``errors`` rows. A corrupt or missing file is an error row, never fatal.
"""

from __future__ import annotations

from typing import Any

Rows = list[dict[str, Any]]
