"""Start a reconciliation from the admin or the API: queued through django-q2 after commit.

The run itself is ``orders.reconcile.reconcile`` (it holds the lock that keeps two
runs from overlapping, and refuses with ReconciliationInProgress, the same error
this module raises up front), run by the job ``orders.jobs.reconcile_job``;
this module only queues it and lets people find its result. The task is named so that the API can answer
"is it done, and which run did it produce?" (see reconciliation_task_status).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import transaction
from django_q import tasks as q_tasks  # called through the module: tests replace django_q.tasks.async_task
from django_q.models import OrmQ, Task

from ordermanager.core.exceptions import NotFound
from orders.models import ReconciliationRun
from orders.reconcile.lock import reconcile_in_progress_error, reconcile_is_running

RECONCILE_JOB = "orders.jobs.reconcile_job"
TASK_PREFIX = "reconcile-"


@dataclass(frozen=True)
class TaskStatus:
    task: str
    state: str  # "queued" | "succeeded" | "failed"
    run_id: int | None
    error: str


def reconciliation_queue(*, trigger: str, user=None, symbol: str | None = None) -> str:
    """Queue one run after the current transaction commits; returns the task name."""
    if trigger not in ReconciliationRun.Trigger.values:
        raise ValueError(f"unknown trigger {trigger!r}")
    if reconcile_is_running():
        # Asks the run's lock, as reconcile() itself does: a row left "running" by a dead process
        # holds no lock and blocks nothing. Checked up front only to spare a job that would be
        # refused; the lock the run takes remains the guarantee.
        raise reconcile_in_progress_error()
    name = f"{TASK_PREFIX}{uuid.uuid4().hex[:16]}"
    user_id = user.pk if user is not None and user.is_authenticated else None
    kwargs = {"trigger": trigger, "user_id": user_id, "symbol": symbol or None}
    transaction.on_commit(lambda: _enqueue(name, kwargs))
    return name


def reconciliation_active() -> bool:
    """A run holds the lock, or a queued start has not begun yet (the admin list refreshes meanwhile)."""
    if reconcile_is_running():
        return True
    return any((q.name() or "").startswith(TASK_PREFIX) for q in OrmQ.objects.order_by("id")[:200])


def _enqueue(name: str, kwargs: dict) -> None:
    q_tasks.async_task(RECONCILE_JOB, task_name=name, group="reconciliation", **kwargs)


def reconciliation_task_status(*, task: str) -> TaskStatus:
    if not task.startswith(TASK_PREFIX):
        raise NotFound(f"No reconciliation task {task!r}.")
    done = Task.objects.filter(name=task).order_by("-stopped").first()
    if done is not None:
        if done.success:
            return TaskStatus(task=task, state="succeeded", run_id=done.result, error="")
        return TaskStatus(task=task, state="failed", run_id=None, error=str(done.result)[:1000])
    if any(q.name() == task for q in OrmQ.objects.all()[:1000]):
        return TaskStatus(task=task, state="queued", run_id=None, error="")
    raise NotFound(f"No reconciliation task {task!r} (unknown, or its record was pruned).")
