"""NOTIFY bodies recorded from a real Asterisk 20 (emulator/ami/recordings/)."""

from __future__ import annotations

import ast
from pathlib import Path

RECORDED = Path(__file__).parents[1] / "emulator" / "ami" / "recordings" / "sip-notify-bodies.txt"


def recorded_notifies(log: str) -> list[tuple[list[str], str]]:
    """The NOTIFYs one watcher got (`sub-dialog.log`, ...): (headers, body) in arrival order."""
    out: list[tuple[list[str], str]] = []
    current: str | None = None
    for line in RECORDED.read_text(encoding="utf-8").splitlines():
        if line.startswith("===== "):
            current = line[6:].strip()
            continue
        if current != log:
            continue
        if line.startswith("--- NOTIFY #"):
            headers = ast.literal_eval(line[line.index("[") :])
            out.append((headers, ""))
        elif out:
            out[-1] = (out[-1][0], out[-1][1] + line + "\n")
    return out


ASTERISK_200 = recorded_notifies("sub-dialog.log")  # the caller's BLF watcher
ASTERISK_201 = recorded_notifies("sub-dialog-201.log")  # the callee's
