"""When the rearrangement runs, counted in generation steps (steps after the skip)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional


class Phase(enum.Enum):
    OFF = "off"
    REARRANGE = "rearrange"
    REFRESH = "refresh"  # take the target's own features (structure refresh)


@dataclass(frozen=True)
class TransferSchedule:
    """Published defaults (100 steps, skip 32): rearrange from step 10 to the end,
    with the target's features instead on steps 10, 15, ..., 35.

    The paper counts the refresh period from the start; the published code tests step % period == 0
    (refresh_counted_from 0), which differs when the start is not a multiple of the period.
    """

    start: int = 10
    end: int = -1  # exclusive; -1 means to the last step
    refresh_every: int = 5  # 0 turns the structure refresh off
    refresh_until: int = 40
    refresh_counted_from: Optional[int] = None  # refresh on steps (step - this) % refresh_every == 0; None: from start

    def phase(self, step: int, total_steps: int) -> Phase:
        end = total_steps if self.end < 0 else min(self.end, total_steps)
        if not self.start <= step < end:
            return Phase.OFF
        anchor = self.start if self.refresh_counted_from is None else self.refresh_counted_from
        if self.refresh_every > 0 and step < self.refresh_until and (step - anchor) % self.refresh_every == 0:
            return Phase.REFRESH
        return Phase.REARRANGE

    def is_empty(self, total_steps: int) -> bool:
        return all(self.phase(s, total_steps) is Phase.OFF for s in range(total_steps))

    def steps_in(self, phase: Phase, total_steps: int) -> list[int]:
        """The generation steps that run `phase`."""
        return [s for s in range(total_steps) if self.phase(s, total_steps) is phase]
