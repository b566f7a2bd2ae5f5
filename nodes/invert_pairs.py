"""Before an Invert computes: does the Invert it is paired with (through Apply, the KSampler or Replay Pieces) use
the same schedule? Read from the prompt the server runs, so a mismatch is refused before the first inversion, not
after both have run (Apply checks the inversions themselves too, for values that arrive through links).
"""

from __future__ import annotations

from typing import Iterator, Optional

# Nodes that take two inversions which must share one schedule, and those inputs.
PAIRING_NODES = {
    "E4E_ApplyEyeForEye": ("reference_inversion", "target_inversion"),
    "E4E_KSampler": ("reference_inversion", "target_inversion"),
    "E4E_ReplayPieces": ("reference_inversion", "target_inversion"),
}
SCHEDULE_WIDGETS = ("steps", "skip", "scheduler")


def _linked_node(value) -> Optional[str]:
    return str(value[0]) if isinstance(value, list) and len(value) == 2 else None


def paired_inverts(prompt: dict, invert_id: str) -> Iterator[tuple[str, str]]:
    """(consumer id, other Invert id) for every pairing node that takes `invert_id` and another E4E_Invert."""
    for consumer_id, node in prompt.items():
        names = PAIRING_NODES.get(node.get("class_type"))
        if not names:
            continue
        sources = [_linked_node(node.get("inputs", {}).get(name)) for name in names]
        if invert_id not in sources:
            continue
        for other in sources:
            if other and other != invert_id and prompt.get(other, {}).get("class_type") == "E4E_Invert":
                yield str(consumer_id), other


def schedule_mismatch(prompt: Optional[dict], invert_id: Optional[str], mine: dict) -> Optional[str]:
    """A message naming the differing widgets, or None. Widgets fed by links are not compared (not known yet)."""
    if not prompt or invert_id is None:
        return None
    for consumer_id, other_id in paired_inverts(prompt, str(invert_id)):
        theirs = prompt[other_id].get("inputs", {})
        differing = [
            name for name in SCHEDULE_WIDGETS
            if _linked_node(theirs.get(name)) is None and name in theirs and theirs[name] != mine[name]
        ]
        if differing:
            got = ", ".join(f"{name} {mine[name]!r} here and {theirs[name]!r} there" for name in differing)
            return (
                f"{'/'.join(differing)}: this Invert (node {invert_id}) and Invert node {other_id}, both feeding "
                f"{prompt[consumer_id]['class_type']} (node {consumer_id}), use different schedules ({got}): "
                "give both Invert nodes the same steps, skip and scheduler"
            )
    return None
