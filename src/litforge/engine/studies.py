"""An Optuna study's storage, opened alike by the search (run/study.py) and its jobs'
pruning (engine/pruning.py); no torch, so a sweep's main process stays light."""

from __future__ import annotations


def open_storage(url: str | None):
    """The study's storage; SQLite waits up to 30 s for a lock (jobs report while others do)."""
    import optuna

    if url is None:
        return None
    engine_kwargs = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else None
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
