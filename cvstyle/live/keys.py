"""The keys of the live window: a pure state machine over what the viewer has chosen,
and the help text that describes it (kept together so a new key is documented where it
is handled)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

STRENGTH_STEP = 0.1
KEY_ESC = 27
NO_KEY = -1
# Shown by ``cvstyle live --help`` and drawn on screen at start.
KEY_HELP = (
    ("n / p", "next / previous style (all styles, then each alone)"),
    ("space", "pause / resume"),
    ("s", "save a snapshot PNG in the current directory"),
    ("o", "side by side with the original on / off"),
    ("c", "keep the photo's colours on / off"),
    ("+ / -", f"strength up / down by {STRENGTH_STEP}"),
    ("h", "show this help again"),
    ("q / Esc", "quit"),
)


@dataclass(frozen=True)
class LiveState:
    """What the viewer has chosen with the keys."""

    styles: int  # how many styles are loaded
    selected: int | None = None  # None: every style in a grid; else only this one
    paused: bool = False
    side_by_side: bool = False
    preserve_colors: bool = False
    strength: float = 1.0

    def visible(self) -> list[int]:
        return list(range(self.styles)) if self.selected is None else [self.selected]

    def look(self) -> tuple:
        """The settings that change the picture (a change re-renders a paused frame)."""
        return self.selected, self.side_by_side, self.preserve_colors, self.strength


class Action(Enum):
    SNAPSHOT = "snapshot"
    HELP = "help"
    QUIT = "quit"


def handle_key(state: LiveState, key: int) -> tuple[LiveState, Action | None]:
    """The state after ``key`` (a ``cv2.waitKey`` code) and what the loop must do."""
    if key == NO_KEY:
        return state, None
    char = chr(key & 0xFF).lower()
    if key == KEY_ESC or char == "q":
        return state, Action.QUIT
    if char == "s":
        return state, Action.SNAPSHOT
    if char == "h":
        return state, Action.HELP
    if char in "np" and state.styles > 1:
        # Cycle through: all styles, then each one alone (which also runs faster).
        views = [None, *range(state.styles)]
        step = 1 if char == "n" else -1
        selected = views[(views.index(state.selected) + step) % len(views)]
        return replace(state, selected=selected), None
    if char == " ":
        return replace(state, paused=not state.paused), None
    if char == "o":
        return replace(state, side_by_side=not state.side_by_side), None
    if char == "c":
        return replace(state, preserve_colors=not state.preserve_colors), None
    if char in "+=-_":
        step = STRENGTH_STEP if char in "+=" else -STRENGTH_STEP
        # Rounded so repeated steps land on 0.1, 0.2... exactly and reach 0 and 1.
        return replace(state, strength=round(min(1.0, max(0.0, state.strength + step)), 6)), None
    return state, None
