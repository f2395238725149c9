"""Before Qt starts on Linux: the system libraries its GUI and X11 (xcb) plugin load, and the line that installs them.

Without them Qt prints "xcb-cursor0 or libxcb-cursor0 is needed" (whichever library is really missing) and
aborts. This module never imports Qt: it runs before the first Qt library is loaded.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SystemLibrary:
    """One shared library Qt loads, and the package that holds it on each family of distributions."""

    soname: str
    debian: str  # Debian, Ubuntu and their children (apt)
    fedora: str  # Fedora, RHEL and their rebuilds (dnf)
    arch: str  # Arch and its children (pacman)
    xcb_only: bool = True  # needed by the X11 plugin only; the others by QtGui on every platform


# The NEEDED entries of PySide6's libQt6Gui, libQt6XcbQpa and libqxcb.so that PySide6 does not ship
# (tests/desktop/test_shell.py reads them from the installed wheel, so this table cannot fall behind).
# libxcb-xinerama0, which older guides list, is no longer loaded by Qt 6.
LIBRARIES: tuple[SystemLibrary, ...] = (
    SystemLibrary("libGL.so.1", "libgl1", "libglvnd-glx", "libglvnd", xcb_only=False),
    SystemLibrary("libEGL.so.1", "libegl1", "libglvnd-egl", "libglvnd", xcb_only=False),
    SystemLibrary("libfontconfig.so.1", "libfontconfig1", "fontconfig", "fontconfig", xcb_only=False),
    SystemLibrary("libfreetype.so.6", "libfreetype6", "freetype", "freetype2", xcb_only=False),
    SystemLibrary("libxkbcommon.so.0", "libxkbcommon0", "libxkbcommon", "libxkbcommon", xcb_only=False),
    SystemLibrary("libdbus-1.so.3", "libdbus-1-3", "dbus-libs", "dbus", xcb_only=False),
    SystemLibrary("libglib-2.0.so.0", "libglib2.0-0", "glib2", "glib2", xcb_only=False),
    SystemLibrary("libX11.so.6", "libx11-6", "libX11", "libx11", xcb_only=False),
    SystemLibrary("libX11-xcb.so.1", "libx11-xcb1", "libX11-xcb", "libx11"),
    SystemLibrary("libxcb.so.1", "libxcb1", "libxcb", "libxcb"),
    SystemLibrary("libxcb-cursor.so.0", "libxcb-cursor0", "xcb-util-cursor", "xcb-util-cursor"),
    SystemLibrary("libxcb-icccm.so.4", "libxcb-icccm4", "xcb-util-wm", "xcb-util-wm"),
    SystemLibrary("libxcb-image.so.0", "libxcb-image0", "xcb-util-image", "xcb-util-image"),
    SystemLibrary("libxcb-keysyms.so.1", "libxcb-keysyms1", "xcb-util-keysyms", "xcb-util-keysyms"),
    SystemLibrary("libxcb-randr.so.0", "libxcb-randr0", "libxcb", "libxcb"),
    SystemLibrary("libxcb-render.so.0", "libxcb-render0", "libxcb", "libxcb"),
    SystemLibrary("libxcb-render-util.so.0", "libxcb-render-util0", "xcb-util-renderutil", "xcb-util-renderutil"),
    SystemLibrary("libxcb-shape.so.0", "libxcb-shape0", "libxcb", "libxcb"),
    SystemLibrary("libxcb-shm.so.0", "libxcb-shm0", "libxcb", "libxcb"),
    SystemLibrary("libxcb-sync.so.1", "libxcb-sync1", "libxcb", "libxcb"),
    SystemLibrary("libxcb-util.so.1", "libxcb-util1", "xcb-util", "xcb-util"),
    SystemLibrary("libxcb-xfixes.so.0", "libxcb-xfixes0", "libxcb", "libxcb"),
    SystemLibrary("libxcb-xkb.so.1", "libxcb-xkb1", "libxcb", "libxcb"),
    SystemLibrary("libxkbcommon-x11.so.0", "libxkbcommon-x11-0", "libxkbcommon-x11", "libxkbcommon-x11"),
)

FAMILIES = {  # os-release ID or ID_LIKE -> the package manager's family
    "debian": "debian", "ubuntu": "debian", "linuxmint": "debian", "pop": "debian", "raspbian": "debian",
    "fedora": "fedora", "rhel": "fedora", "centos": "fedora", "rocky": "fedora", "almalinux": "fedora",
    "arch": "arch", "manjaro": "arch", "endeavouros": "arch",
}
INSTALL = {"debian": "sudo apt install {}", "fedora": "sudo dnf install {}", "arch": "sudo pacman -S --needed {}"}
FAMILY_NAMES = {"debian": "Debian/Ubuntu", "fedora": "Fedora/RHEL", "arch": "Arch"}


def debian_packages() -> list[str]:
    """Every Debian/Ubuntu package of the table, once each, in order: the README and .ci/run list exactly these."""
    return list(dict.fromkeys(lib.debian for lib in LIBRARIES))


def qt_platform(argv: Sequence[str], environ: Mapping[str, str]) -> str:
    """The platform plugin Qt will try first: `-platform` on the command line, QT_QPA_PLATFORM, else the session's."""
    args = list(argv)
    for position, arg in enumerate(args[:-1]):
        if arg == "-platform":
            return args[position + 1].split(";")[0].split(":")[0]
    chosen = environ.get("QT_QPA_PLATFORM", "")
    if chosen:
        return chosen.split(";")[0].split(":")[0]
    # Qt 6 starts its Wayland plugin in a Wayland session and the xcb one otherwise.
    if environ.get("XDG_SESSION_TYPE") == "wayland" and environ.get("WAYLAND_DISPLAY"):
        return "wayland"
    return "xcb"


def _loadable(soname: str) -> bool:
    # dlopen is the loader's own answer (LD_LIBRARY_PATH and the ld.so cache included), in microseconds;
    # Qt loads these same libraries a moment later anyway.
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def missing_libraries(platform: str, *, libraries: Sequence[SystemLibrary] | None = None,
                      loadable: Callable[[str], bool] = _loadable) -> list[SystemLibrary]:
    """The libraries Qt needs on `platform` that this system cannot load."""
    wanted = [lib for lib in (LIBRARIES if libraries is None else libraries) if platform == "xcb" or not lib.xcb_only]
    return [lib for lib in wanted if not loadable(lib.soname)]


def read_os_release(path: Path = Path("/etc/os-release")) -> dict[str, str]:
    """os-release's KEY=value lines (quotes removed); empty when there is no such file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            values[key.strip()] = value.strip().strip("\"'")
    return values


def distro_family(os_release: Mapping[str, str]) -> str | None:
    """debian, fedora or arch after os-release's ID, then its ID_LIKE; None for anything else."""
    for word in [os_release.get("ID", ""), *os_release.get("ID_LIKE", "").split()]:
        if word.lower() in FAMILIES:
            return FAMILIES[word.lower()]
    return None


def install_message(missing: Sequence[SystemLibrary], os_release: Mapping[str, str]) -> str:
    """One message: what is missing, and the install line for this distribution (all three when it is unknown)."""
    family = distro_family(os_release)
    name = os_release.get("PRETTY_NAME") or os_release.get("NAME") or "this system"
    families = [family] if family else list(INSTALL)
    lines = ["Tokenometer cannot open its window: Qt needs system libraries that are missing here:",
             "  " + " ".join(lib.soname for lib in missing), ""]
    if family:
        lines.append(f"Install them on {name} with:")
    else:
        lines.append(f"Install them with your package manager ({name} is not one this message knows); "
                     "the packages are called:")
    for each in families:
        packages = " ".join(dict.fromkeys(getattr(lib, each) for lib in missing))
        prefix = "  " if family else f"  {FAMILY_NAMES[each]}: "
        lines.append(prefix + INSTALL[each].format(packages))
    lines += ["", "then start Tokenometer again. The command-line tools (tokenometer --help) work without them."]
    return "\n".join(lines)


def check_gui_libraries(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None, *,
                        os_release: Path = Path("/etc/os-release"),
                        libraries: Sequence[SystemLibrary] | None = None) -> str | None:
    """The message to print when Qt could not start its window here, or None when it can (or this is not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    platform = qt_platform(sys.argv if argv is None else argv, os.environ if environ is None else environ)
    if platform not in ("xcb", "wayland", "offscreen", "minimal", "eglfs", "vnc", "linuxfb"):
        return None  # a plugin this table knows nothing about: let Qt speak for itself
    missing = missing_libraries(platform, libraries=libraries)
    if missing:
        log.debug("missing for Qt's %s platform: %s", platform, [lib.soname for lib in missing])
        return install_message(missing, read_os_release(os_release))
    env = os.environ if environ is None else environ
    if platform == "xcb" and not env.get("DISPLAY"):
        # Over SSH or in a container Qt would abort with "could not connect to display".
        return ("Tokenometer cannot open its window: there is no X display (DISPLAY is not set). Start it from a "
                "desktop session, or over SSH with `ssh -X`; the command-line tools (tokenometer --help) need no "
                "display.")
    return None
