"""Writes how-a-test-runs.svg, drawn in how-it-works.md. Rerun: python3 docs/how-a-test-runs.py"""

from __future__ import annotations

from html import escape
from pathlib import Path

WIDTH = 1000
FONT = "DejaVu Sans, Verdana, Arial, sans-serif"
SIZE = 13
CHAR = 7.6  # a generous average width of one character at SIZE
LINE = 17
PAD = 8
GAP = 14

NOTE = 'fill="#ffffff" stroke="#555555"'
PARENT = 'fill="#e8f0fb" stroke="#2f5d9e"'
INSIDE = 'fill="#e6f4e6" stroke="#3b7d3b"'


class Diagram:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.y = 20.0

    def text(self, x: float, y: float, line: str, anchor: str = "middle", extra: str = "") -> None:
        self.parts.append(
            f'<text x="{x:.0f}" y="{y:.0f}" text-anchor="{anchor}" {extra}>{escape(line)}</text>'
        )

    def title(self, line: str) -> None:
        self.y += 10
        self.text(20, self.y + SIZE, line, "start", 'font-size="17" font-weight="bold"')
        self.y += 30

    def actors(self, actors: dict[float, tuple[str, str]]) -> None:
        for x, (name, role) in actors.items():
            width = max(len(name), len(role)) * CHAR + 2 * PAD
            self.parts.append(
                f'<rect x="{x - width / 2:.0f}" y="{self.y:.0f}" width="{width:.0f}" '
                f'height="{2 * LINE + 2 * PAD}" rx="4" {PARENT}/>'
            )
            self.text(x, self.y + PAD + SIZE, name, extra='font-weight="bold"')
            self.text(x, self.y + PAD + LINE + SIZE, role)
        self.y += 2 * LINE + 2 * PAD
        self.top = self.y

    def lifelines(self, ends: dict[float, float]) -> None:
        lines = [
            f'<line x1="{x:.0f}" y1="{self.top:.0f}" x2="{x:.0f}" y2="{end:.0f}" '
            'stroke="#888888" stroke-dasharray="5,4"/>'
            for x, end in ends.items()
        ]
        at = self.first + self.regions  # over the shaded bands, under everything else
        self.parts[at:at] = lines

    def begin(self) -> None:
        self.first = len(self.parts)
        self.regions = 0
        self.y += GAP

    def note(self, x: float, lines: list[str], style: str = NOTE, width: float = 0) -> None:
        width = width or max(len(line) for line in lines) * CHAR + 2 * PAD
        height = len(lines) * LINE + 2 * PAD - 4
        self.parts.append(
            f'<rect x="{x - width / 2:.0f}" y="{self.y:.0f}" width="{width:.0f}" '
            f'height="{height:.0f}" rx="3" {style}/>'
        )
        for i, line in enumerate(lines):
            self.text(x, self.y + PAD + SIZE - 2 + i * LINE, line)
        self.y += height + GAP

    def message(self, start: float, end: float, label: str, dashed: bool = False) -> None:
        """An arrow from ``start`` to ``end``, its label above it, centred."""
        self.y += LINE
        self.text((start + end) / 2, self.y - 6, label, extra='font-style="italic"')
        dash = ' stroke-dasharray="6,4"' if dashed else ""
        self.parts.append(
            f'<line x1="{start:.0f}" y1="{self.y:.0f}" x2="{end:.0f}" y2="{self.y:.0f}" '
            f'stroke="#222222" stroke-width="1.5"{dash} marker-end="url(#arrow)"/>'
        )
        self.y += GAP + 4

    def open_region(self) -> float:
        """Where a shaded band starts, with room for its label."""
        top = self.y - GAP / 2
        self.y += LINE
        return top

    def region(self, x: float, half: float, top: float, label: str) -> None:
        """A shaded band behind a lifeline, from ``top`` to here: inside a namespace."""
        bottom = self.y - GAP / 2
        self.parts.insert(
            self.first,
            f'<rect x="{x - half:.0f}" y="{top:.0f}" width="{2 * half:.0f}" '
            f'height="{bottom - top:.0f}" rx="6" fill="#f3faf3" stroke="#3b7d3b" '
            'stroke-dasharray="3,3"/>',
        )
        self.regions += 1
        self.parts.append(
            f'<text x="{x + half - 6:.0f}" y="{top + SIZE + 2:.0f}" text-anchor="end" '
            f'fill="#3b7d3b" font-size="12">{escape(label)}</text>'
        )

    def end(self, x: float) -> None:
        self.parts.append(
            f'<path d="M{x - 7:.0f},{self.y - 7:.0f} l14,14 m0,-14 l-14,14" '
            'stroke="#222222" stroke-width="2"/>'
        )

    def svg(self) -> str:
        height = self.y + 10
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
            f'viewBox="0 0 {WIDTH} {height:.0f}" font-family="{FONT}" font-size="{SIZE}">\n'
            "<title>How a test runs: fork mode and in-process mode</title>\n"
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" '
            'markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
            'fill="#222222"/></marker></defs>\n'
            f'<rect width="{WIDTH}" height="{height:.0f}" fill="#ffffff"/>\n'
        )
        return head + "\n".join(self.parts) + "\n</svg>\n"


def fork_mode(d: Diagram) -> None:
    parent, pipe, child = 200.0, 500.0, 780.0
    d.title("Fork mode (the default): a child forked per test")
    d.actors(
        {
            parent: ("pytest's process", "the parent, in pytest's namespace"),
            pipe: ("the pipe", "frames, close-on-exec"),
            child: ("the forked child", "one per test"),
        }
    )
    d.begin()
    d.note(
        parent, ["set up wider-scoped fixtures", "(session, module, class);", "check the targets"]
    )
    d.message(parent, child, "fork()  (or a go to the spare forked ahead)")
    d.note(
        child,
        [
            "PR_SET_PDEATHSIG, subreaper;",
            "without root: unshare(CLONE_NEWUSER), id maps;",
            "unshare(CLONE_NEWNS)",
        ],
    )
    top = d.open_region()
    d.note(
        child,
        ['mount("/", MS_REC|MS_PRIVATE)', "(a spare forked ahead waits here for its go)"],
        INSIDE,
    )
    d.note(
        child,
        ["setup: mount what the test declares", "(tmpfs, binds, ...), then function fixtures"],
        INSIDE,
    )
    for phase, logged in (
        ("setup", "log it: terminal, junitxml, -x, plugins"),
        ("call", "log it at once"),
    ):
        if phase == "call":
            d.note(child, ["call: the test itself"], INSIDE)
        d.message(child, pipe, f"{phase} report")
        d.message(pipe, parent, "read the frame")
        d.note(parent, [logged])
    d.note(child, ["teardown; then kill whatever", "the test left running"], INSIDE)
    d.message(child, pipe, "teardown report")
    d.message(pipe, parent, "read the frame")
    d.note(parent, ["keep it, to merge with the wider scopes' half"])
    d.message(child, pipe, "warnings, junitxml, plugin data")
    d.message(pipe, parent, "read the frames")
    d.note(parent, ["replay the warnings; apply to junitxml"])
    d.note(child, ["save coverage data"], INSIDE)
    d.message(child, pipe, "DONE")
    d.message(pipe, parent, "read the frame")
    d.note(child, ["os._exit(0): the namespace", "and its mounts go with it"], INSIDE)
    d.region(child, 205, top, "the child's own mount namespace")
    d.end(child)
    child_end = d.y - 7
    d.note(
        parent,
        [
            "check pytest's mount table (leaks);",
            "tear down the wider scopes that end;",
            "log the merged teardown report;",
            "reap the child later",
        ],
    )
    d.lifelines({parent: d.y - GAP, pipe: child_end, child: child_end})
    d.y += GAP


def in_process_mode(d: Diagram) -> None:
    thread, releaser = 250.0, 760.0
    d.title("In-process mode: pytest's thread goes in and comes back")
    d.actors(
        {
            thread: ("pytest's thread", "runs every phase of the test"),
            releaser: ("pytest-mountns-release", "a thread of the plugin's"),
        }
    )
    d.begin()
    d.note(thread, ["set up wider-scoped fixtures;", "check the targets (pytest's namespace)"])
    d.message(thread, releaser, "start it, once", dashed=True)
    d.note(
        thread,
        [
            "setup starts: hold pytest's namespace,",
            "root and working directory (descriptors);",
            "unshare(CLONE_NEWNS)",
        ],
    )
    top = d.open_region()
    d.note(thread, ['mount("/", MS_REC|MS_PRIVATE);', "mount what the test declares"], INSIDE)
    d.note(
        thread,
        [
            "setup, call, teardown; the setup and call",
            "reports logged at once (pytest's own",
            "objects: no fork, no pipe)",
        ],
        INSIDE,
    )
    d.note(
        thread,
        [
            "way back: ids restored; unshare(CLONE_FS);",
            "setns() to pytest's namespace;",
            "chroot, fchdir and umask back",
        ],
        INSIDE,
    )
    d.region(thread, 215, top, "the test's mount namespace")
    d.message(thread, releaser, "the left namespace's descriptor")
    d.note(
        releaser,
        [
            "close it: the kernel drops the namespace",
            "and its mounts (an RCU wait),",
            "while pytest's thread goes on",
        ],
    )
    d.note(
        thread,
        [
            "end what the test left running;",
            "check pytest's mount table (leaks);",
            "tear down the wider scopes that end;",
            "log the merged teardown report",
        ],
    )
    d.note(
        releaser,
        [
            "joined before a fork, before a test",
            "without isolation, and at the session's end",
        ],
    )
    d.lifelines({thread: d.y - GAP, releaser: d.y - GAP})


def main() -> None:
    d = Diagram()
    fork_mode(d)
    in_process_mode(d)
    Path(__file__).with_suffix(".svg").write_text(d.svg())


if __name__ == "__main__":
    main()
