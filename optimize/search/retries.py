"""Trials that run again with the same parameters, each starting with a clean record.

A heartbeat-stale trial (its worker died or lost the database) is retried by `RetryStaleTrial`; an
interrupted trial (SIGTERM/SIGINT) is queued again by `requeue`. The copy records only its link to
the original: system attrs `failed_trial` and `retry_history` (as Optuna's own callback writes them),
or user attrs `requeued_from` and `requeued`. It inherits nothing else: not the failed trial's
`reason`, history or summary, nor its constraints.
"""

from __future__ import annotations

import logging

import optuna
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger(__name__)


class RetryStaleTrial:
    """Heartbeat-stale trial callback: queue the trial again, at most `max_retry` times per original trial.

    Replaces `optuna.storages.RetryHeartbeatStaleTrialCallback`, which copies every user and system
    attr of the failed trial into the retry.
    """

    def __init__(self, max_retry: int) -> None:
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        history = [*trial.system_attrs.get("retry_history", []), trial.number]
        if len(history) > self.max_retry:
            log.warning(
                "trial %d had no heartbeat within the grace period (its worker died or lost the database): "
                "FAIL, not queued again (retried %d times already)",
                trial.number,
                len(history) - 1,
            )
            return
        link = {"failed_trial": trial.system_attrs.get("failed_trial", trial.number), "retry_history": history}
        fixed = trial.system_attrs.get("fixed_params")
        if fixed and not trial.params:  # a queued trial that died before it drew its parameters
            link["fixed_params"] = fixed
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=trial.params,
                distributions=trial.distributions,
                system_attrs=link,
            )
        )
        log.warning(
            "trial %d had no heartbeat within the grace period (its worker died or lost the database): "
            "FAIL, queued again with the same params",
            trial.number,
        )


def requeue(trial: optuna.Trial, reason: str) -> None:
    """Queue an interrupted trial's parameters again for a live worker; the copy records which trial it repeats.

    A trial interrupted before it drew its parameters needs no copy, unless it was itself a queued one.
    """
    params = trial.params or trial._cached_frozen_trial.system_attrs.get("fixed_params")
    if params:
        trial.study.enqueue_trial(params, user_attrs={"requeued_from": trial.number, "requeued": reason})


def retried_trial_number(trial: optuna.Trial) -> int | None:
    """The trial this one retries: a heartbeat-stale trial or an interrupted one."""
    failed = trial._cached_frozen_trial.system_attrs.get("failed_trial")
    return failed if failed is not None else trial.user_attrs.get("requeued_from")
