"""The results recorder the CLI and the GUI both use: the store, this machine, an energy meter, record_events."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from models.errors import StoreError
from models.settings import Settings

if TYPE_CHECKING:
    from models.results.store import RunRecord

log = logging.getLogger(__name__)

EventCallback = Callable[[Any, Any], None]


def open_recorder(*, machine: dict[str, Any] | None = None, settings: Settings | None = None,
                  then: EventCallback | None = None,
                  model_identity: dict[str, Any] | Callable[[Any], dict[str, Any] | None] | None = None,
                  on_save_error: Callable[[RunRecord, StoreError], None] | None = None,
                  ) -> tuple[EventCallback, Callable[[], None]]:
    """An on_event callback that commits every result to the results store as it arrives, and the store's close.

    `machine` defaults to this machine's fingerprint (the GUI passes the one it already probed); energy comes
    from the sensors EnergyMeter reads, else from the settings' system watts marked as an estimate, else none.
    Raises StoreError when the store cannot be opened (the caller decides whether the numbers still go on),
    unless `on_save_error` is given: then every run the store cannot take goes there (see record_events).
    """
    from models.machine.energy import EnergyMeter
    from models.results.store import ResultsStore, record_events

    if settings is None:
        from models.settings import load_settings

        settings = load_settings()
    if machine is None:
        from models.machine.hardware import machine_fingerprint

        machine = machine_fingerprint()
    try:
        store: ResultsStore | StoreError = ResultsStore()
    except StoreError as error:
        if on_save_error is None:
            raise
        log.warning("Results cannot be saved to the store: %s", error)
        store = error
    meter = EnergyMeter(fallback_watts=settings.system_power_watts or None)
    log.debug("Recording results in %s; energy %s", getattr(store, "path", store), meter.describe())
    on_event = record_events(store, machine=machine, energy_meter=meter if meter.available else None, then=then,
                             model_identity=model_identity, on_save_error=on_save_error)
    return on_event, store.close if isinstance(store, ResultsStore) else (lambda: None)
