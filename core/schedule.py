"""When the rearrangement runs, counted in generation steps (steps after the skip)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Phase(enum.Enum):
    OFF = "off"
    REARRANGE = "rearrange"
    REFRESH = "refresh"  # take the target's own features (structure refresh)


@dataclass(frozen=True)
class TransferSchedule:
    """Published defaults (100 steps, skip 32): rearrange from step 10 to the end,
    with the target's features instead on steps 10, 15, ..., 35."""

    start: int = 10
    end: int = -1  # exclusive; -1 means to the last step
    refresh_every: int = 5  # 0 turns the structure refresh off
    refresh_until: int = 40

    def phase(self, step: int, total_steps: int) -> Phase:
        end = total_steps if self.end < 0 else min(self.end, total_steps)
        if not self.start <= step < end:
            return Phase.OFF
        if self.refresh_every > 0 and step < self.refresh_until and (step - self.start) % self.refresh_every == 0:
            return Phase.REFRESH
        return Phase.REARRANGE

    def is_empty(self, total_steps: int) -> bool:
        return all(self.phase(s, total_steps) is Phase.OFF for s in range(total_steps))

    def steps_in(self, phase: Phase, total_steps: int) -> list[int]:
        """The generation steps that run `phase`."""
        return [s for s in range(total_steps) if self.phase(s, total_steps) is phase]
