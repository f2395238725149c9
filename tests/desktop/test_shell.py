"""The main window: pages, keyboard navigation, remembered size and page, theme, error dialog, jobs."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt

from desktop.pages import PAGES


def test_every_page_opens_from_the_keyboard(window, qtbot, hub) -> None:
    # `hub`: the Discover page searches when first shown, and tests never reach the real Hub.
    for number, info in enumerate(PAGES, start=1):
        qtbot.keyClick(window, Qt.Key(Qt.Key.Key_0 + number), Qt.KeyboardModifier.ControlModifier)
        assert window.current_page() == info.name
        assert window.stack.currentWidget() is window.pages[info.name]
        assert window.pages[info.name].isVisible()


def test_ctrl_f_goes_to_the_filter(window, qtbot) -> None:
    window.show_page("library")
    page = window.pages["library"]
    qtbot.keyClick(window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert page.filter.hasFocus()


def test_pages_are_built_on_first_show_only(window) -> None:
    assert set(window.pages) == {"benchmark"}  # startup builds the page on screen, nothing else
    window.show_page("settings")
    assert set(window.pages) == {"benchmark", "settings"}


def test_window_remembers_size_and_page(qtbot, qsettings_path: Path) -> None:
    from desktop.main_window import MainWindow

    settings = QSettings(str(qsettings_path), QSettings.Format.IniFormat)
    first = MainWindow(settings=settings)
    qtbot.addWidget(first)
    first.show()
    first.resize(760, 720)
    first.show_page("hardware")
    size = (first.width(), first.height())
    first.close()
    second = MainWindow(settings=QSettings(str(qsettings_path), QSettings.Format.IniFormat))
    qtbot.addWidget(second)
    assert second.current_page() == "hardware"
    # The offscreen screen is small, so only the width is sure to come back exactly.
    assert second.width() == size[0] == 760
    assert second.height() == size[1] == 720
    second.close()


def test_dark_theme_follows_the_scheme(qapp, monkeypatch: pytest.MonkeyPatch) -> None:
    from PySide6.QtGui import QPalette

    from desktop.theme import apply_theme

    monkeypatch.setenv("TOKENOMETER_THEME", "dark")
    apply_theme(qapp)
    assert qapp.palette().color(QPalette.ColorRole.Window).lightness() < 80
    monkeypatch.setenv("TOKENOMETER_THEME", "light")
    apply_theme(qapp)
    assert qapp.palette().color(QPalette.ColorRole.Window).lightness() > 180


def test_unhandled_errors_end_in_one_dialog_with_details_to_copy(window, qtbot) -> None:
    from PySide6.QtGui import QGuiApplication

    from desktop import error_dialog

    try:
        raise ValueError("the first thing that broke")
    except ValueError:
        error_dialog._excepthook(*sys.exc_info())  # what sys.excepthook does in the app
    qtbot.waitUntil(lambda: error_dialog.error_dialog() is not None and error_dialog.error_dialog().isVisible())
    dialog = error_dialog.error_dialog()
    assert "the first thing that broke" in dialog.summary.text()
    # An error on a plain thread goes to the same dialog, not a second window.
    thread = threading.Thread(target=lambda: error_dialog.report_error(RuntimeError("from a thread")))
    thread.start()
    thread.join()
    qtbot.waitUntil(lambda: dialog.count == 2)
    assert error_dialog.error_dialog() is dialog
    assert "2 errors" in dialog.summary.text()
    qtbot.mouseClick(dialog.toggle, Qt.MouseButton.LeftButton)
    assert dialog.details.isVisible()
    assert "ValueError" in dialog.details.toPlainText() and "from a thread" in dialog.details.toPlainText()
    qtbot.mouseClick(dialog.copy, Qt.MouseButton.LeftButton)
    assert "the first thing that broke" in QGuiApplication.clipboard().text()
    dialog.close()
    assert dialog.count == 0


def test_a_job_delivers_its_result_on_the_gui_thread(qtbot) -> None:
    from desktop.jobs import run_job

    got: list[tuple[int, bool]] = []
    gui = threading.get_ident()
    run_job(lambda: (threading.get_ident() != gui, 42),
            on_done=lambda value: got.append((value[1], value[0] and threading.get_ident() == gui)))
    qtbot.waitUntil(lambda: bool(got))
    assert got == [(42, True)]


def test_a_failed_job_without_a_handler_reaches_the_error_dialog(window, qtbot) -> None:
    from desktop import error_dialog
    from desktop.jobs import run_job
    from models.errors import HubError

    def fail() -> None:
        raise HubError("The Hub answered 503.")

    run_job(fail)
    qtbot.waitUntil(lambda: error_dialog.error_dialog() is not None and error_dialog.error_dialog().isVisible())
    assert error_dialog.error_dialog().summary.text().endswith("The Hub answered 503.")
    error_dialog.error_dialog().close()


def test_a_bridge_turns_callbacks_from_any_thread_into_signals_on_the_gui_thread(qtbot) -> None:
    from desktop.jobs import Bridge

    bridge = Bridge()
    gui = threading.get_ident()
    seen: list[tuple] = []
    bridge.arrived.connect(lambda args: seen.append((*args, threading.get_ident() == gui)))
    worker = threading.Thread(target=lambda: [bridge("tick", n) for n in range(5)])
    worker.start()
    worker.join()
    qtbot.waitUntil(lambda: len(seen) == 5)
    assert seen == [("tick", n, True) for n in range(5)]


def test_the_installed_pyside_survives_many_signal_emissions() -> None:
    """PySide6 6.12.0 on Python 3.11 drops a reference to True on every emit() and aborts the process after
    enough signals (a benchmark sends thousands); 6.11.3 does not. This catches such a build before users do."""
    import subprocess

    code = ("from PySide6.QtCore import QCoreApplication, QObject, Signal\n"
            "app = QCoreApplication([])\n"
            "class S(QObject):\n    done = Signal(object)\n"
            "s = S(); s.done.connect(lambda value: None)\n"
            "for _ in range(100_000):\n    s.done.emit(5)\n"
            "for _ in range(100_000):\n    app.processEvents()\n"
            "print('survived')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "survived" in proc.stdout, (
        f"this PySide6 build crashes after many signals (exit {proc.returncode}): {proc.stderr[-300:]}; "
        "install PySide6 6.11.3")


def test_the_tokenometer_command_opens_the_window(tmp_path: Path) -> None:
    """`python -m desktop.launch` (the `tokenometer` command without arguments) shows the window: the startup
    probe prints when it is first exposed and quits."""
    import os
    import subprocess

    env = dict(os.environ, TOKENOMETER_STARTUP_PROBE="1", XDG_CONFIG_HOME=str(tmp_path / "config"))
    proc = subprocess.run([sys.executable, "-m", "desktop.launch"], capture_output=True, text=True, timeout=60,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-800:]
    assert proc.stdout.startswith("TOKENOMETER_WINDOW_SHOWN ")
    assert "Traceback" not in proc.stderr


# -- the system libraries Qt needs on Linux, checked before Qt loads --

def _needed(library: Path) -> set[str]:
    """The DT_NEEDED entries of a shared library, as readelf (binutils, in .ci/run's build-essential) lists them."""
    import re
    import shutil
    import subprocess

    readelf = shutil.which("readelf")
    assert readelf, "readelf (binutils) is needed to read what Qt's libraries load"
    out = subprocess.run([readelf, "-d", str(library)], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Qt's xcb plugin exists on Linux only")
def test_the_library_table_covers_every_system_library_qt_loads() -> None:
    import PySide6

    from desktop.system_libs import LIBRARIES

    qt = Path(PySide6.__file__).parent / "Qt"
    shipped = {path.name for path in (qt / "lib").iterdir()}
    loaded = set()
    for library in (qt / "lib" / "libQt6Gui.so.6", qt / "lib" / "libQt6Widgets.so.6", qt / "lib" / "libQt6DBus.so.6",
                    qt / "lib" / "libQt6XcbQpa.so.6", qt / "plugins" / "platforms" / "libqxcb.so"):
        loaded |= _needed(library)
    # The C runtime and libraries every Linux with Python has (zlib, zstd; gthread comes with glib).
    base = {"libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1", "libz.so.1", "libzstd.so.1",
            "libgthread-2.0.so.0", "libpthread.so.0", "libdl.so.2"}
    system = {name for name in loaded - shipped - base if not name.startswith("ld-linux")}
    assert system, "readelf found nothing: the check above would pass vacuously"
    assert system <= {lib.soname for lib in LIBRARIES}, system - {lib.soname for lib in LIBRARIES}
    assert "libxcb-cursor.so.0" in system and "libxcb-icccm.so.4" in system


def test_readme_and_ci_install_exactly_the_table() -> None:
    import re

    from desktop.system_libs import debian_packages

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```sh\nsudo apt install (.*?)\n```", readme, re.S)
    assert block, "the README's apt line for Qt's libraries"
    assert block.group(1).replace("\\", " ").split() == debian_packages()
    ci = (root / ".ci" / "run").read_text(encoding="utf-8")
    line = re.search(r"apt-get install -y -qq --no-install-recommends(.*?)>/dev/null", ci, re.S)
    assert line
    words = line.group(1).replace("\\", " ").split()
    assert [word for word in words if word in debian_packages()] == debian_packages()
    assert "xvfb" in words


@pytest.mark.parametrize(("release", "expected"), [
    ('ID=ubuntu\nID_LIKE=debian\nPRETTY_NAME="Ubuntu 24.04 LTS"\n', "  sudo apt install libxcb-cursor0 libxcb-icccm4"),
    ('ID=debian\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n', "  sudo apt install libxcb-cursor0 libxcb-icccm4"),
    ('ID="rocky"\nID_LIKE="rhel centos fedora"\n', "  sudo dnf install xcb-util-cursor xcb-util-wm"),
    ("ID=manjaro\nID_LIKE=arch\n", "  sudo pacman -S --needed xcb-util-cursor xcb-util-wm"),
])
def test_the_install_line_fits_the_distribution(tmp_path: Path, release: str, expected: str) -> None:
    from desktop.system_libs import LIBRARIES, install_message, read_os_release

    (tmp_path / "os-release").write_text(release)
    missing = [lib for lib in LIBRARIES if lib.soname in ("libxcb-cursor.so.0", "libxcb-icccm.so.4")]
    message = install_message(missing, read_os_release(tmp_path / "os-release"))
    assert expected in message.splitlines()
    assert "libxcb-cursor.so.0 libxcb-icccm.so.4" in message
    assert sum(line.startswith("  sudo ") for line in message.splitlines()) == 1


def test_an_unknown_distribution_gets_all_three_lines(tmp_path: Path) -> None:
    from desktop.system_libs import LIBRARIES, install_message, read_os_release

    (tmp_path / "os-release").write_text('ID=nixos\nPRETTY_NAME="NixOS 24.05"\n')
    missing = [lib for lib in LIBRARIES if lib.soname == "libxcb-keysyms.so.1"]
    message = install_message(missing, read_os_release(tmp_path / "os-release"))
    assert "NixOS 24.05" in message
    for line in ("sudo apt install libxcb-keysyms1", "sudo dnf install xcb-util-keysyms",
                 "sudo pacman -S --needed xcb-util-keysyms"):
        assert line in message


def test_the_platform_qt_will_use() -> None:
    from desktop.system_libs import qt_platform

    assert qt_platform(["tokenometer"], {}) == "xcb"
    assert qt_platform(["tokenometer", "-platform", "offscreen"], {"QT_QPA_PLATFORM": "xcb"}) == "offscreen"
    assert qt_platform(["tokenometer"], {"QT_QPA_PLATFORM": "xcb:display=:3;offscreen"}) == "xcb"
    assert qt_platform(["tokenometer"], {"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"}) == "wayland"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the check runs on Linux only")
def test_a_missing_library_stops_the_command_with_one_message_before_qt_loads(tmp_path: Path) -> None:
    """The real check on this machine's loader, with one library that no system has added to the table."""
    import os
    import subprocess

    from desktop.system_libs import distro_family, read_os_release

    code = ("import sys\n"
            "import desktop.system_libs as s\n"
            "s.LIBRARIES += (s.SystemLibrary('libxcb-not-here.so.9', 'libxcb-not-here9', 'xcb-util-not-here',"
            " 'xcb-util-not-here'),)\n"
            "from desktop.launch import main\n"
            "code = main([])\n"
            "print('qt loaded' if any(m.startswith('PySide6.Qt') for m in sys.modules) else 'qt not loaded')\n"
            "sys.exit(code)\n")
    env = dict(os.environ, QT_QPA_PLATFORM="xcb", XDG_CONFIG_HOME=str(tmp_path / "config"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 1, proc.stderr[-800:]
    assert proc.stdout.strip() == "qt not loaded"
    assert "libxcb-not-here.so.9" in proc.stderr and "Traceback" not in proc.stderr
    family = distro_family(read_os_release())
    expected = {"debian": "sudo apt install libxcb-not-here9", "fedora": "sudo dnf install xcb-util-not-here",
                "arch": "sudo pacman -S --needed xcb-util-not-here", None: "sudo apt install libxcb-not-here9"}
    assert expected[family] in proc.stderr
    assert "libxcb-cursor" not in proc.stderr  # only what is missing, not Qt's misleading guess


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11 under Xvfb is a Linux test")
def test_the_window_opens_on_x11_under_xvfb(tmp_path: Path) -> None:
    """The real window on the xcb platform of a virtual X server (CI installs Xvfb and the README's libraries)."""
    import os
    import shutil
    import subprocess

    xvfb_binary = shutil.which("Xvfb")
    assert xvfb_binary, "Xvfb is needed (.ci/run installs it)"
    read, write = os.pipe()
    # -displayfd: Xvfb picks a free display itself and writes its number when it is ready for clients.
    xvfb = subprocess.Popen([xvfb_binary, "-displayfd", str(write), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(write)
    try:
        with os.fdopen(read) as pipe:
            display = pipe.readline().strip()
        assert display.isdigit(), f"Xvfb did not start: {xvfb.stderr.read() if xvfb.poll() is not None else ''}"
        env = dict(os.environ, DISPLAY=f":{display}", QT_QPA_PLATFORM="xcb", TOKENOMETER_STARTUP_PROBE="1",
                   XDG_CONFIG_HOME=str(tmp_path / "config"))
        proc = subprocess.run([sys.executable, "-m", "desktop.launch"], capture_output=True, text=True, timeout=90,
                              env=env, cwd=Path(__file__).resolve().parents[2])
    finally:
        xvfb.terminate()
        xvfb.wait(10)
    assert proc.returncode == 0, proc.stderr[-1500:]
    shown = proc.stdout.split()
    assert shown[0] == "TOKENOMETER_WINDOW_SHOWN" and shown[2] == "xcb", proc.stdout
    assert "Could not load the Qt platform plugin" not in proc.stderr


# -- one list of pages; one job shape that notifies --

def test_titles_and_hints_come_from_the_one_page_list(window, qtbot, hub) -> None:
    from PySide6.QtWidgets import QLabel

    for row, info in enumerate(PAGES):
        window.show_page(info.name)
        page = window.pages[info.name]
        assert page.findChild(QLabel, "pageTitle").text() == info.title
        assert page.findChild(QLabel, "pageHint").text() == info.hint
        assert window.sidebar.item(row).text() == info.title
        assert info.hint in window.sidebar.item(row).toolTip()


def test_no_page_announces_a_change_by_hand() -> None:
    import re

    pages = Path(__file__).resolve().parents[2] / "desktop" / "pages"
    emits = {path.name: re.findall(r"\w+_changed\.emit\(", path.read_text(encoding="utf-8"))
             for path in pages.glob("*.py")}
    assert {name: found for name, found in emits.items() if found} == {}


def test_a_change_refreshes_every_page_that_shows_the_data(window, qtbot, tiny_gguf: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "my-models"
    folder.mkdir()
    shutil.copy(tiny_gguf, folder / "mine-Q4_0.gguf")
    window.show_page("settings")
    settings = window.pages["settings"]
    window.show_page("library")
    library = window.pages["library"]
    qtbot.waitUntil(lambda: library.table.rowCount() >= 1, timeout=20_000)
    library.add_folder(folder)  # on the Library page ...
    # ... and the Library's table and the Settings page's folder list both follow, without a hand-made signal.
    qtbot.waitUntil(lambda: any(e.path.name == "mine-Q4_0.gguf" for e in library.table.rows), timeout=20_000)
    qtbot.waitUntil(lambda: str(folder) in [settings.folder_list.item(i).text()
                                            for i in range(settings.folder_list.count())], timeout=10_000)
    settings.folder_list.setCurrentRow([settings.folder_list.item(i).text()
                                        for i in range(settings.folder_list.count())].index(str(folder)))
    settings.remove_folder()  # the other way round: Settings changes, the Library follows
    qtbot.waitUntil(lambda: all(e.path.name != "mine-Q4_0.gguf" for e in library.table.rows), timeout=20_000)
    assert settings.folder_list.count() == 0


def test_a_failed_change_still_notifies_and_a_deleted_page_is_not_called(qtbot) -> None:
    from PySide6.QtWidgets import QWidget

    from desktop.jobs import Change, Notifier, run_change

    notifier = Notifier()
    seen: list[str] = []
    errors: list[BaseException] = []
    page, gone = QWidget(), QWidget()
    notifier.watch(Change.LIBRARY, lambda: seen.append("library"), owner=page)
    notifier.watch(Change.RESULTS, lambda: seen.append("results"), owner=page)
    notifier.watch(Change.LIBRARY, lambda: seen.append("deleted page"), owner=gone)
    gone.deleteLater()
    qtbot.wait(10)

    def half_done() -> None:
        raise OSError("the third file could not be deleted")

    run_change(half_done, changes=Change.LIBRARY, notifier=notifier, on_error=errors.append)
    qtbot.waitUntil(lambda: bool(errors))
    assert seen == ["library"] and "third file" in str(errors[0])
    run_change(lambda: 1, changes=Change.LIBRARY | Change.RESULTS, notifier=notifier)
    qtbot.waitUntil(lambda: len(seen) == 3)
    assert seen == ["library", "library", "results"]


# -- choices instead of free text --

# The offscreen platform cannot grab the keyboard for a popup list; that is its limit, not the widget's.
POPUP_NOISE = pytest.mark.qt_log_ignore(r"This plugin does not support (propagateSizeHints|raise|grabbing the keyboard)")

def _click_choice(qtbot, box, value: str) -> None:
    """Open the box's list and click the row of `value`, as a user does."""
    box.showPopup()
    view = box.view()
    qtbot.waitUntil(view.isVisible, timeout=5_000)
    rect = view.visualRect(box.model().index(box.values.index(value), 0))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


@POPUP_NOISE
def test_a_choice_list_ticks_values_into_a_comma_list_for_sweeps(qtbot) -> None:
    from desktop.choices import ChoiceList

    box = ChoiceList(["auto", "on", "off"], multiple=True)
    qtbot.addWidget(box)
    box.show()
    edits: list[str] = []
    box.textEdited.connect(edits.append)
    box.setText("off")
    assert box.text() == "off" and edits == []  # set by the program: no "edited" signal
    _click_choice(qtbot, box, "auto")
    assert box.view().isVisible()  # the list stays open for the next tick
    _click_choice(qtbot, box, "on")
    assert box.text() == "auto, on, off"  # the set's order, whatever the order of the clicks
    assert edits == ["auto, off", "auto, on, off"]
    for value in ("auto", "off"):
        _click_choice(qtbot, box, value)
    _click_choice(qtbot, box, "on")  # the last ticked value cannot be unticked: a sweep over nothing
    assert box.text() == "on"
    box.hidePopup()
    assert box.lineEdit().text() == "on"
    box.setText(" on ,off")  # what a preset or a saved form may hold
    assert box.checked() == ["on", "off"]
    with pytest.raises(ValueError, match="maybe is not one of auto, on, off"):
        box.setText("on, maybe")
    assert box.text() == "on, off"  # a refused value changes nothing


def test_a_single_choice_refuses_a_list_and_unknown_values(qtbot) -> None:
    from desktop.choices import ChoiceList

    box = ChoiceList(["f16", "q8_0", "q4_0"])
    qtbot.addWidget(box)
    box.setText("q8_0")
    assert box.text() == "q8_0" and box.currentText() == "q8_0"
    with pytest.raises(ValueError, match="one value"):
        box.setText("f16, q4_0")
    with pytest.raises(ValueError, match="q9 is not one of f16, q8_0, q4_0"):
        box.setText("q9")


@POPUP_NOISE
def test_settings_offers_the_currency_as_a_choice_and_units_follow_it(window, qtbot) -> None:
    import json

    from PySide6.QtWidgets import QDoubleSpinBox

    from desktop.choices import ChoiceList
    from models.paths import settings_path

    window.show_page("settings")
    page = window.pages["settings"]
    currency = page.editors["currency"]
    assert isinstance(currency, ChoiceList) and currency.text() == "EUR"
    price = page.editors["electricity_price_per_kwh"]
    assert isinstance(price, QDoubleSpinBox) and price.suffix() == " EUR/kWh"
    currency.showPopup()
    view = currency.view()
    qtbot.waitUntil(view.isVisible, timeout=5_000)
    rect = view.visualRect(currency.model().index(currency.values.index("CHF"), 0))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert currency.text() == "CHF"
    assert price.suffix() == " CHF/kWh"  # at once, not after a restart
    qtbot.waitUntil(lambda: settings_path().exists()
                    and json.loads(settings_path().read_text()).get("currency") == "CHF", timeout=10_000)


@POPUP_NOISE
def test_benchmark_defaults_are_ticked_not_typed_and_the_benchmark_page_starts_from_them(window, qtbot) -> None:
    import json

    from desktop.choices import ChoiceList
    from models.paths import settings_path

    window.show_page("settings")
    page = window.pages["settings"]
    for name in ("bench_flash_attn", "bench_type_k", "bench_type_v", "bench_use_mmap"):
        assert isinstance(page.editors[name], ChoiceList) and page.editors[name].multiple
    kv = page.editors["bench_type_k"]
    assert kv.text() == "f16" and "q8_0" in kv.values
    _click_choice(qtbot, kv, "q8_0")  # two K types: a sweep
    _click_choice(qtbot, page.editors["bench_use_mmap"], "off")
    kv.hidePopup()
    qtbot.waitUntil(lambda: settings_path().exists()
                    and json.loads(settings_path().read_text()).get("bench_use_mmap") == "auto, off", timeout=10_000)
    assert json.loads(settings_path().read_text())["bench_type_k"] == "f16, q8_0"
    window.show_page("benchmark")
    bench = window.pages["benchmark"]
    bench.set_preset("Standard")
    assert bench.fields["type_k"].text() == "f16, q8_0" and bench.fields["use_mmap"].text() == "auto, off"
    sweep = bench.sweep([Path("model.gguf")])
    assert sweep.type_k == ["f16", "q8_0"] and sweep.use_mmap == [None, False]


def test_a_hand_edited_choice_outside_the_set_falls_back_with_a_warning(tmp_path: Path) -> None:
    import json

    from models.settings import load_settings

    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"bench_type_k": "q8_0,f16", "bench_flash_attn": "sometimes"}))
    settings = load_settings(path=path)
    assert settings.bench_type_k == "q8_0, f16"
    assert settings.bench_flash_attn == "auto"
    assert any("bench_flash_attn must be one of auto, on, off" in warning for warning in settings.warnings)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the check runs on Linux only")
def test_no_display_is_said_in_one_sentence_instead_of_a_qt_abort(tmp_path: Path) -> None:
    import os
    import subprocess

    env = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(QT_QPA_PLATFORM="xcb", XDG_CONFIG_HOME=str(tmp_path / "config"))
    proc = subprocess.run([sys.executable, "-m", "desktop.launch"], capture_output=True, text=True, timeout=60,
                          env=env, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("Tokenometer cannot open its window: there is no X display")
    assert "qt.qpa" not in proc.stderr and "Aborted" not in proc.stderr
