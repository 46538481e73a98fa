"""Store conformance: the worker registry, heartbeats, leases and held jobs.

Every test takes the ``store`` fixture, so it runs on every backend."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from queuectl.lifecycle import Outcome
from queuectl.store import Store

from .support import LEASE, T0, at, claim_one, finish, insert, supervisor


def test_a_registered_supervisor_lists_one_worker_per_slot_in_slot_order(store: Store) -> None:
    info = supervisor("sup-a", slots=3, pid=31337)
    store.register_supervisor(info, ["sup-a-3", "sup-a-1", "sup-a-2"])
    workers = store.workers()
    assert [w.id for w in workers] == ["sup-a-3", "sup-a-1", "sup-a-2"]
    assert all(w.supervisor == info for w in workers)
    assert all(w.current_job is None for w in workers)


def test_workers_lists_every_supervisor_oldest_first(store: Store) -> None:
    store.register_supervisor(supervisor("late", now=at(10)), ["late-1"])
    store.register_supervisor(supervisor("early", now=T0), ["early-1", "early-2"])
    assert [(w.id, w.supervisor.id) for w in store.workers()] == \
        [("early-1", "early"), ("early-2", "early"), ("late-1", "late")]


def test_registering_a_supervisor_again_replaces_its_old_record_and_slots(store: Store) -> None:
    store.register_supervisor(supervisor("sup", slots=2), ["sup-1", "sup-2"])
    fresh = replace(supervisor("sup", slots=1, pid=5555), started_at=at(5), heartbeat_at=at(5))
    store.register_supervisor(fresh, ["sup-9"])
    workers = store.workers()
    assert [w.id for w in workers] == ["sup-9"]
    assert workers[0].supervisor == fresh


def test_forgetting_a_supervisor_removes_it_and_its_workers_only(store: Store) -> None:
    store.register_supervisor(supervisor("a"), ["a-1", "a-2"])
    store.register_supervisor(supervisor("b", now=at(1)), ["b-1"])
    store.forget_supervisors(["a"])
    assert [w.id for w in store.workers()] == ["b-1"]
    store.forget_supervisors(["b", "never-registered"])
    assert store.workers() == []


def test_a_workers_current_job_is_set_by_its_claim_and_cleared_when_it_finishes(store: Store) -> None:
    store.register_supervisor(supervisor("sup"), ["sup-1", "sup-2"])
    insert(store, "j1", "j2")
    claim = claim_one(store, "sup-2")
    assert {w.id: w.current_job for w in store.workers()} == {"sup-1": None, "sup-2": "j1"}
    assert finish(store, claim, Outcome.completed())
    assert {w.id: w.current_job for w in store.workers()} == {"sup-1": None, "sup-2": None}


def test_an_interrupted_attempt_also_clears_the_current_job(store: Store) -> None:
    store.register_supervisor(supervisor("sup"), ["sup-1"])
    insert(store, "j1")
    assert finish(store, claim_one(store, "sup-1"), Outcome.interrupted())
    assert [w.current_job for w in store.workers()] == [None]


# --- heartbeats -------------------------------------------------------------------------

def test_a_heartbeat_marks_the_supervisor_alive_and_extends_its_leases(store: Store) -> None:
    store.register_supervisor(supervisor("sup"), ["sup-1", "sup-2"])
    insert(store, "a", "b")
    claims = store.claim(["sup-1", "sup-2"], T0, LEASE)
    beat = store.heartbeat("sup", [c.token for c in claims], at(20), LEASE)
    assert (beat.registered, beat.stop_requested, beat.lost_tokens) == (True, False, frozenset())
    assert {h.claim.job.id: h.lease_expires_at for h in store.held_jobs()} == \
        {"a": at(50), "b": at(50)}
    assert {w.supervisor.heartbeat_at for w in store.workers()} == {at(20)}


def test_a_heartbeat_only_extends_the_leases_it_names(store: Store) -> None:
    store.register_supervisor(supervisor("sup"), ["sup-1", "sup-2"])
    insert(store, "a", "b")
    a, b = store.claim(["sup-1", "sup-2"], T0, LEASE)
    store.heartbeat("sup", [a.token], at(20), LEASE)
    assert {h.claim.job.id: h.lease_expires_at for h in store.held_jobs()} == \
        {"a": at(50), "b": at(30)}


def test_a_heartbeat_reports_tokens_whose_lease_was_taken_away(store: Store) -> None:
    store.register_supervisor(supervisor("sup"), ["sup-1", "sup-2"])
    insert(store, "kept", "recovered")
    kept, recovered = store.claim(["sup-1", "sup-2"], T0, LEASE)
    # Someone presumed the second attempt lost and ended it.
    assert finish(store, recovered, Outcome.retry_at(at(40), None, "worker lost"), now=at(35))
    beat = store.heartbeat("sup", [kept.token, recovered.token, "made-up-token"], at(36), LEASE)
    assert beat.registered is True
    assert beat.lost_tokens == frozenset({recovered.token, "made-up-token"})
    assert [h.claim.token for h in store.held_jobs()] == [kept.token]


def test_a_heartbeat_of_an_unknown_supervisor_says_it_is_not_registered(store: Store) -> None:
    beat = store.heartbeat("ghost", [], T0, LEASE)
    assert (beat.registered, beat.stop_requested, beat.lost_tokens) == (False, False, frozenset())


def test_a_forgotten_supervisors_heartbeat_says_it_is_no_longer_registered(store: Store) -> None:
    store.register_supervisor(supervisor("sup"), ["sup-1"])
    store.forget_supervisors(["sup"])
    assert store.heartbeat("sup", [], at(1), LEASE).registered is False


def test_a_stop_request_is_reported_by_the_next_heartbeat_of_that_supervisor_only(store: Store) -> None:
    store.register_supervisor(supervisor("a"), ["a-1"])
    store.register_supervisor(supervisor("b", now=at(1)), ["b-1"])
    assert store.heartbeat("a", [], at(2), LEASE).stop_requested is False
    store.request_stop(["a"])
    assert store.heartbeat("a", [], at(3), LEASE).stop_requested is True
    assert store.heartbeat("b", [], at(3), LEASE).stop_requested is False
    assert {w.supervisor.id: w.supervisor.stop_requested for w in store.workers()} == \
        {"a": True, "b": False}


# --- held jobs ----------------------------------------------------------------------------

def test_held_jobs_lists_processing_jobs_with_their_lease_and_supervisor(store: Store) -> None:
    info = supervisor("sup", host="box-1", pid=777)
    store.register_supervisor(info, ["sup-1", "sup-2"])
    insert(store, "a", "b", "waiting")
    insert(store, "done", priority=-1)
    assert finish(store, claim_one(store, "sup-1"), Outcome.completed())
    claims = store.claim(["sup-1", "sup-2"], at(1), 10)
    held = sorted(store.held_jobs(), key=lambda h: h.claim.job.id)
    assert [h.claim.job.id for h in held] == ["a", "b"]
    for h, c in zip(held, claims):
        assert h.claim.token == c.token
        assert h.claim.attempt == c.attempt == 1
        assert h.claim.worker_id == c.worker_id
        assert h.claim.job == store.get_job(c.job.id)
        assert h.lease_expires_at == at(11)
        assert h.supervisor == info


def test_a_held_job_whose_worker_is_not_registered_has_no_supervisor(store: Store) -> None:
    store.register_supervisor(supervisor("sup"), ["sup-1"])
    insert(store, "orphan", "owned")
    store.claim(["unregistered-worker"], T0, LEASE)
    claim_one(store, "sup-1")
    supervisors = {h.claim.job.id: h.supervisor for h in store.held_jobs()}
    assert supervisors["orphan"] is None
    assert supervisors["owned"] is not None and supervisors["owned"].id == "sup"
    store.forget_supervisors(["sup"])
    assert {h.claim.job.id: h.supervisor for h in store.held_jobs()} == {"orphan": None, "owned": None}


def test_a_held_retry_reports_its_latest_attempt_number(store: Store) -> None:
    insert(store, "j")
    assert finish(store, claim_one(store), Outcome.retry_at(at(1), 1, "exit code 1"))
    second = claim_one(store, now=at(1))
    [held] = store.held_jobs()
    assert (held.claim.attempt, held.claim.token) == (2, second.token)
    assert held.lease_expires_at == at(1) + timedelta(seconds=LEASE)


def test_held_jobs_is_empty_when_nothing_is_processing(store: Store) -> None:
    insert(store, "a")
    assert store.held_jobs() == []
