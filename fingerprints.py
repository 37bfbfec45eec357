"""What a saved file was made from, and the one function that says how two such records differ.

The data cache and the checkpoint each store a fingerprint: a JSON object of the settings and
files their contents depend on. On the next run the saved fingerprint is compared with the one
the run would make; ``differences`` turns a mismatch into words for the one-line message.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

# Keys whose value is a digest of other settings: naming the key says more than two hex strings.
DIGESTS = {"data": "data (files, labels table, preprocessing or split settings)"}


def digest(record: dict) -> str:
    """SHA-256 (hex) of a fingerprint as JSON with sorted keys: equal records, equal digests."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def settings(config, unchanged_when: dict, leave_out: tuple = ()) -> dict:
    """The dataclass ``config`` as a fingerprint records it: every field but ``leave_out``, and each
    setting added since a release only where it differs from ``unchanged_when[name]``, the value
    that behaves as that release did. So the release's caches and checkpoints keep their
    fingerprints, and resume with the new settings set so."""
    return {key: value for key, value in dataclasses.asdict(config).items()
            if key not in leave_out and (key not in unchanged_when or value != unchanged_when[key])}


def differences(old: dict, new: dict, prefix: str = "", digested: dict | None = None) -> list[str]:
    """Each difference between two fingerprints, as ``section.key before -> after``.

    Nested objects are compared key by key; a list of files (objects with a ``name``) is
    compared by name: new, removed or changed files. ``digested``: for a key of ``DIGESTS``,
    the (old, new) records its two digests were made from, where known; if they match the
    digests, the differences between the records are named instead of the key.
    """
    changes = []
    for key in sorted(set(old) | set(new), key=str):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if isinstance(before, dict) and isinstance(after, dict):
            changes += differences(before, after, f"{prefix}{key}.")
        elif _is_file_list(before) and _is_file_list(after):
            changes += _file_differences(before, after)
        elif not prefix and key in DIGESTS:
            records = (digested or {}).get(key)
            if records and all(isinstance(d, str) and record is not None and digest(record).startswith(d)
                               for d, record in zip((before, after), records)):
                changes += [change for change in differences(*records) if change not in changes]
            else:
                changes.append(DIGESTS[key])
        else:
            # A key absent on one side is a setting that version did not have (its old behaviour).
            changes.append(f"{prefix}{key} {'(not set)' if key not in old else before} -> "
                           f"{'(not set)' if key not in new else after}")
    return changes


def describe(old: dict, new: dict, limit: int = 4) -> str:
    """The differences in one line, the first ``limit`` of them named."""
    changes = differences(old, new)
    if len(changes) > limit:
        changes = changes[:limit] + [f"{len(changes) - limit} more"]
    return ", ".join(changes) or "unknown difference"


def _is_file_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) and "name" in item for item in value)


def _file_differences(old: list[dict], new: list[dict]) -> list[str]:
    before = {item["name"]: item for item in old}
    after = {item["name"]: item for item in new}
    return ([f"new file {name}" for name in sorted(after.keys() - before.keys())]
            + [f"file {name} removed" for name in sorted(before.keys() - after.keys())]
            + [f"file {name} changed" for name in sorted(before.keys() & after.keys()) if before[name] != after[name]])
