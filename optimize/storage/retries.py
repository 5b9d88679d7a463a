"""Trials that run again with the same parameters, each starting with a clean record.

A heartbeat-stale trial (its worker died or lost the database) is retried by `RetryStaleTrial`; an
interrupted trial (SIGTERM/SIGINT) is queued again by `requeue`. The copy records only its link to
the original (`optimize.results.record`: `stale_retry_link`, `requeued_attrs`). It inherits nothing
else: not the failed trial's reason, history or summary, nor its constraints.
"""

from __future__ import annotations

import logging

import optuna
from optuna.trial import FrozenTrial, TrialState

from optimize.results.record import fixed_params, requeued_attrs, retry_chain, stale_retry_link

log = logging.getLogger(__name__)


class RetryStaleTrial:
    """Heartbeat-stale trial callback: queue the trial again, at most `max_retry` times per original trial.

    Replaces `optuna.storages.RetryHeartbeatStaleTrialCallback`, which copies every user and system
    attr of the failed trial into the retry.
    """

    def __init__(self, max_retry: int) -> None:
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        history = retry_chain(trial)
        if len(history) > self.max_retry:
            log.warning(
                "trial %d had no heartbeat within the grace period (its worker died or lost the database): "
                "FAIL, not queued again (retried %d times already)",
                trial.number,
                len(history) - 1,
            )
            return
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=trial.params,
                distributions=trial.distributions,
                system_attrs=stale_retry_link(trial),
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
    params = trial.params or fixed_params(trial._cached_frozen_trial)
    if params:
        trial.study.enqueue_trial(params, user_attrs=requeued_attrs(trial.number, reason))
