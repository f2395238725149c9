"""The user's settings (prices, hardware cost, power, defaults) in one JSON file, written atomically."""

from __future__ import annotations

import json
import logging
import math
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from models.bench.spec import KV_TYPES
from models.files import atomic_write_text

log = logging.getLogger(__name__)

SETTINGS_VERSION = 1


# The values llama.cpp accepts for the settings below that form a set (the GUI offers them as choices).
FLASH_ATTN_CHOICES = ("auto", "on", "off")
KV_TYPE_CHOICES = KV_TYPES
MMAP_CHOICES = ("auto", "on", "off")  # auto: llama-bench's default, mapped unless a device cannot


def _setting(default: Any, label: str, unit: str = "", minimum: float | None = 0,
             choices: tuple[str, ...] = ()) -> Any:
    meta = {"label": label, "unit": unit, "minimum": minimum, "choices": choices}
    return field(default=default, metadata=meta)


@dataclass
class Settings:
    """Every setting with its default; `warnings` says what was wrong with the file it was read from."""

    electricity_price_per_kwh: float = _setting(0.30, "Electricity price", "{currency}/kWh")
    currency: str = _setting("EUR", "Currency", "", None)
    hardware_cost: float = _setting(1500.0, "Hardware cost", "{currency}")
    hardware_lifetime_years: float = _setting(4.0, "Hardware lifetime", "years", 0.1)
    hardware_hours_per_day: float = _setting(8.0, "Hours of use per day", "h/day", 0.1)
    system_power_watts: float = _setting(0.0, "System power under load (used where no sensor reads energy)", "W")
    api_price_per_mtok: float = _setting(0.50, "Hosted API price, output tokens", "{currency} per 1M tokens")
    api_input_price_per_mtok: float = _setting(0.10, "Hosted API price, input tokens", "{currency} per 1M tokens")
    default_threads: int = _setting(0, "Default threads (0: physical cores)", "threads")
    # Where the Benchmark page's Custom preset starts; each may be a comma list, swept like llama-bench's.
    bench_flash_attn: str = _setting("auto", "Flash attention", "", None, FLASH_ATTN_CHOICES)
    bench_type_k: str = _setting("f16", "KV cache type K", "", None, KV_TYPE_CHOICES)
    bench_type_v: str = _setting("f16", "KV cache type V", "", None, KV_TYPE_CHOICES)
    bench_use_mmap: str = _setting("auto", "Map the model file (mmap)", "", None, MMAP_CHOICES)
    # llama.cpp RPC servers (HOST:PORT) whose devices the app may use: the Benchmark page's remote option and
    # Discover's fit for the pool. A tuple: the default of a dataclass field must not be mutable.
    rpc_endpoints: tuple[str, ...] = _setting((), "Remote devices (RPC servers)", "", None)
    warnings: list[str] = field(default_factory=list, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"version": SETTINGS_VERSION}
        data.update({f.name: getattr(self, f.name) for f in fields(self) if f.name != "warnings"})
        return data


@dataclass(frozen=True)
class SettingInfo:
    """What the GUI shows next to a setting: its label, unit (currency filled in), default, and the values allowed
    where they form a set (a comma list of them is allowed too)."""

    name: str
    label: str
    unit: str
    default: Any
    minimum: float | None
    choices: tuple[str, ...] = ()


def describe_settings(settings: Settings | None = None) -> list[SettingInfo]:
    """Labels, units and defaults of every setting, units worded in the settings' currency."""
    currency = (settings or Settings()).currency
    defaults = Settings()
    return [SettingInfo(name=f.name, label=f.metadata["label"], unit=f.metadata["unit"].format(currency=currency),
                        default=getattr(defaults, f.name), minimum=f.metadata["minimum"],
                        choices=f.metadata["choices"])
            for f in fields(Settings) if f.name != "warnings"]


def endpoint_list(value: Any) -> tuple[tuple[str, ...], list[str]]:
    """(the good endpoints, normalised HOST:PORT in their order; why each other entry was left out)."""
    from models.machine.rpc import MAX_SERVERS, RpcError, parse_endpoint

    if not isinstance(value, (list, tuple)):
        return (), [f"rpc_endpoints must be a list of HOST:PORT texts, not {type(value).__name__}"]
    kept: list[str] = []
    problems: list[str] = []
    for entry in value:
        if not isinstance(entry, str):
            problems.append(f"rpc_endpoints entry {entry!r} is not a text")
            continue
        try:
            endpoint = str(parse_endpoint(entry))
        except RpcError as error:
            problems.append(str(error))
            continue
        if endpoint in kept:
            problems.append(f"RPC endpoint {endpoint} is listed twice")
        elif len(kept) >= MAX_SERVERS:
            problems.append(f"RPC endpoint {endpoint}: llama.cpp takes at most {MAX_SERVERS} servers")
        else:
            kept.append(endpoint)
    return tuple(kept), problems


def _coerce(name: str, value: Any, default: Any, minimum: float | None, choices: tuple[str, ...] = ()) -> Any:
    """The value in the type of its default, or ValueError; bool is refused where a number is wanted."""
    if isinstance(default, tuple):
        kept, problems = endpoint_list(value)
        if problems:
            raise ValueError(f"{name}: {'; '.join(problems)}")
        return kept
    if isinstance(default, str):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} must be a non-empty text")
        words = [word.strip() for word in value.split(",")]
        if choices and not all(word in choices for word in words):
            raise ValueError(f"{name} must be one of {', '.join(choices)} (or a comma list of them)")
        return ", ".join(words) if choices else value.strip()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number")
    if not math.isfinite(value) or abs(value) > 1e15:  # 1e999 reads as inf; neither is a price or a wattage
        raise ValueError(f"{name} must be a finite number of sensible size")
    if isinstance(default, int) and not float(value).is_integer():
        raise ValueError(f"{name} must be a whole number")
    number = int(value) if isinstance(default, int) else float(value)
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be at least {minimum:g}")
    return number


# A settings file is a few hundred bytes; anything far larger is not ours and is not read into memory.
MAX_SETTINGS_BYTES = 1 << 20


def _no_constant(name: str) -> Any:
    raise ValueError(f"it holds {name}, which is not a number")


def _read_settings_text(path: Path) -> str:
    """The file's text; a FIFO, device or folder (which would block or fail oddly) or a huge file is refused."""
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("it is not a regular file")
    if info.st_size > MAX_SETTINGS_BYTES:
        raise ValueError(f"it is {info.st_size:,} bytes, far too large for a settings file")
    return path.read_text(encoding="utf-8")


def load_settings(*, path: Path | None = None) -> Settings:
    """Read the settings; a missing file gives the defaults, a corrupt one the defaults and a warning
    (the bad file kept as .bak), a bad value its default and a warning."""
    from models.paths import settings_path

    path = path or settings_path()
    if not path.exists():
        return Settings()
    try:
        data = json.loads(_read_settings_text(path), parse_constant=_no_constant)
        if not isinstance(data, dict):
            raise ValueError("the file does not hold a JSON object")
    except (OSError, ValueError, RecursionError) as error:
        if isinstance(error, RecursionError):  # hostile nesting; the message would only say "maximum depth"
            error = ValueError("its JSON is nested too deeply")
        backup = path.with_name(path.name + ".bak")
        try:
            os.replace(path, backup)
            kept = f"; the unreadable file was kept as {backup}"
        except OSError:
            kept = ""
        message = f"The settings file {path} could not be read ({error}); the defaults are used{kept}."
        log.warning(message)
        return Settings(warnings=[message])
    settings = Settings()
    for f in fields(Settings):
        if f.name == "warnings" or f.name not in data:
            continue
        if f.name == "rpc_endpoints":  # one bad entry must not lose the others
            settings.rpc_endpoints, problems = endpoint_list(data[f.name])
            for problem in problems:
                message = f"Setting {problem}; it was left out."
                log.warning(message)
                settings.warnings.append(message)
            continue
        try:
            setattr(settings, f.name, _coerce(f.name, data[f.name], getattr(settings, f.name), f.metadata["minimum"],
                                                     f.metadata["choices"]))
        except ValueError as error:
            message = f"Setting {error}; the default {getattr(settings, f.name)!r} is used."
            log.warning(message)
            settings.warnings.append(message)
    return settings


def save_settings(settings: Settings, *, path: Path | None = None) -> Path:
    """Write atomically (models.files: temp file, fsync, rename, fsync of the folder): never half a file."""
    from models.paths import settings_path

    path = path or settings_path()
    defaults = Settings()
    for f in fields(Settings):
        if f.name != "warnings":
            _coerce(f.name, getattr(settings, f.name), getattr(defaults, f.name), f.metadata["minimum"],
                    f.metadata["choices"])
    return atomic_write_text(path, json.dumps(settings.to_json(), indent=2) + "\n")


_update_lock = threading.Lock()


def update_settings(change: Callable[[Settings], None], *, path: Path | None = None) -> Settings:
    """Read, change and write the settings as one step: two pages may save different settings at the same time,
    and neither must write back the other's old value. Raises ValueError (nothing written) on a bad value."""
    with _update_lock:
        settings = load_settings(path=path)
        change(settings)
        save_settings(settings, path=path)
        return settings
