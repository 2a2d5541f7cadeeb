"""The service's operations, once for every door.

The REST resources (``resources/``) and the MCP tools (``mcp/``) call these and nothing else:
submit, get (with a long-poll), output pages, cancel, the listings, sessions, heap metadata and
tags. Arguments arrive checked against the contract's schemas by the door (a REST query string
needs converting, MCP arguments are JSON already); what only the service can know (the code's
size, whether an execution or a heap exists, a full queue) is checked here. Results are the
contract's JSON documents as dicts; refusals are :class:`OperationError` with the HTTP status
the contract gives them, which each door turns into its own form (an ``{"error"}`` response,
an MCP tool result with ``isError``). Every heap question goes to the heap catalogue, which
answers for the whole deployment (every node, every process on the data directory).

Operations act for a principal (:meth:`Operations.for_principal`, :mod:`.principal`): every
execution, output, session, live session, heap and heap tag belongs to a tenant, and another
tenant's are answered exactly as ones that do not exist (404; a cancel's ``ok: false``
"not found"), never listed. A principal with ``admin`` reads every tenant's executions, outputs
and sessions (another tenant's then say their ``tenant``); what it changes (submits, cancels, decisions,
heaps and their tags, live sessions) is its own tenant's, as for anyone.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from .executions import CancelOutcome, QueueFull, ShuttingDown, spec_from_request
from .executions.approvals import BadDecisions, Decision, NotWaiting, UnknownExecution
from .executions.live import LiveConflict, LiveUnavailable, NotLive
from .executions.live_slot import LiveSessionError
from .executions.spec import CODE_LIMIT, ExecutionSpec
from .principal import TENANT_PATTERN, Principal, single_tenant
from .quotas import QUOTAS, QuotaReached
from .storage import (
    ExecutionNotFound,
    ExecutionRecord,
    ExecutionStatus,
    HeapInUse,
    HeapMeta,
    HeapNotFound,
    HeapNotSigned,
    HeapStoreUnavailable,
    HeapTagLimit,
    InvalidCursor,
    InvalidHeapKey,
    SessionSummary,
    ToolCallLog,
    validate_heap_key,
)

if TYPE_CHECKING:
    from .config import Settings
    from .executions import ExecutionManager
    from .executions.approvals import Approvals
    from .storage import ExecutionStore, HeapCatalogue, OutputLog
    from .tools.caller import ServerInfo, ToolCaller

EXECUTION_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
OUTPUT_LINE_LIMIT = 1000  # the contract's defaults of GET /api/executions/{id}/output
OUTPUT_BYTE_LIMIT = 65536


class OperationError(Exception):
    """A refusal, with the HTTP status the contract gives it and, for 429 and 503, the
    seconds after which a retry makes sense."""

    status = 400
    retry_after: int | None = None


class BadInput(OperationError):
    status = 400


class NotFound(OperationError):
    status = 404


class Conflict(OperationError):
    status = 409


class TooLarge(OperationError):
    status = 413


class Busy(OperationError):
    status = 429
    retry_after = 1


class Unavailable(OperationError):
    status = 503
    retry_after = 5


class QuotaExceeded(OperationError):
    """A tenant's quota refused the request (:mod:`mcp_v8.quotas`): 429, retry after the seconds
    the quota says (the rest of the minute for a per-minute one)."""

    status = 429

    def __init__(self, reached: QuotaReached) -> None:
        super().__init__(str(reached))
        self.quota = reached.quota
        self.retry_after = reached.retry_after


def execution_info(record: ExecutionRecord, *, tenant: bool = False) -> dict[str, Any]:
    """The contract's ExecutionInfo (with its ``tenant`` when ``tenant``: another tenant's, read
    by an admin)."""
    info = {
        "execution_id": record.execution_id,
        "status": record.status,
        "started_at": record.started_at,
        "completed_at": record.completed_at,
        "result": record.result,
        "error": record.error,
        "heap": record.heap,
        "session": record.session,
        "tags": record.tags,
        "duration_ms": record.duration_ms,
        "js_error": None if record.js_error is None else record.js_error.to_dict(),
        "pending_tool_calls": _pending(record),
        "approval_deadline": record.approval_deadline if record.status == "waiting" else None,
        "trace_id": record.trace_id,
    }
    if tenant:
        info["tenant"] = record.tenant
    return info


def _pending(record: ExecutionRecord) -> list[dict[str, Any]] | None:
    """The calls a waiting execution holds, their arguments as the JSON value the script sent."""
    if record.status != "waiting" or record.pending_tool_calls is None:
        return None
    return [{**c.to_dict(), "arguments": json.loads(c.arguments)} for c in record.pending_tool_calls]


def _summary(record: ExecutionRecord, tenant: bool) -> dict[str, Any]:
    summary = {
        "execution_id": record.execution_id,
        "status": record.status,
        "started_at": record.started_at,
        "completed_at": record.completed_at,
    }
    if tenant:
        summary["tenant"] = record.tenant
    return summary


def _shown(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


# Records one execution may have: max_tool_calls + 1 at most, under any ceiling a server sets.
TOOL_CALLS_READ = 1 << 31


def _execution_not_found(execution_id: str) -> NotFound:
    return NotFound(f"execution {_shown(execution_id)!r} not found")


class Operations:
    """What a client can do with one service (its stores and execution manager)."""

    def __init__(
        self,
        settings: Settings,
        *,
        manager: ExecutionManager,
        executions: ExecutionStore,
        output: OutputLog,
        catalogue: HeapCatalogue,
        tools: ToolCaller | None = None,
        tool_calls: ToolCallLog | None = None,
        approvals: Approvals | None = None,
    ) -> None:
        self.settings = settings
        self.tools = tools
        self.metrics = manager.metrics  # what the doors count too (MCP tool calls)
        self._tool_calls = tool_calls
        self._approvals = approvals
        self._manager = manager
        self._executions = executions
        self._output = output
        self._catalogue = catalogue
        self.principal = single_tenant()  # whom these operations act for (for_principal)

    def for_principal(self, principal: Principal) -> Operations:
        """These operations acting for ``principal``: the same stores and manager, answered for
        its tenant (:mod:`mcp_v8.principal`). Cheap: one per request."""
        if principal == self.principal:
            return self
        bound = copy.copy(self)
        bound.principal = principal
        return bound

    @property
    def _tenant(self) -> str:
        """The tenant these operations act for: what they create and change is its."""
        return self.principal.tenant

    @property
    def _reads(self) -> str | None:
        """The tenant these operations read (None: every tenant's, for an admin)."""
        return self.principal.tenant_filter

    def _sees(self, record: ExecutionRecord | None) -> bool:
        """Whether the principal may read ``record`` (its tenant's, or any for an admin)."""
        return record is not None and self._reads in (None, record.tenant)

    def _foreign(self, tenant: str) -> bool:
        """Whether an object of ``tenant`` the principal reads is another tenant's (an admin's
        reading across tenants): its answer then names its tenant."""
        return tenant != self._tenant

    def _owns(self, record: ExecutionRecord | None) -> bool:
        """Whether ``record`` is of the principal's tenant: what it may change."""
        return record is not None and record.tenant == self._tenant

    def _readable(self, execution_id: str) -> ExecutionRecord:
        """The record of an execution the principal may read; NotFound otherwise, as for an
        unknown one."""
        if not EXECUTION_ID.fullmatch(execution_id):
            raise _execution_not_found(execution_id)
        record = self._executions.get(execution_id)
        if not self._sees(record):
            raise _execution_not_found(execution_id)
        assert record is not None
        return record

    # -- the server ----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Stats: the server's counters (they name no tenant's object), with the details of the
        last worker crash and the last sandbox violation only when the principal may read the
        execution they name (an admin always): another tenant's show as none."""
        stats = self._manager.stats()
        if self._reads is None:
            return stats
        if not self._names_readable(stats.get("last_worker_crash")):
            stats["last_worker_crash"] = None
        sandbox = stats.get("sandbox")
        if isinstance(sandbox, dict) and not self._names_readable(sandbox.get("last_violation")):
            sandbox["last_violation"] = None
        return stats

    def _names_readable(self, detail: Any) -> bool:
        """Whether ``detail`` (a crash's or violation's, naming an execution) may be shown."""
        if not isinstance(detail, dict):
            return False
        execution_id = detail.get("execution_id")
        return isinstance(execution_id, str) and self._sees(self._executions.get(execution_id))

    # -- tools -------------------------------------------------------------------------

    def tool_servers(self) -> list[ServerInfo]:
        """The tool servers of ``--tools-config`` the principal's tenant may call (its
        ``tool_servers``), their state and exposed tools (none without the setting)."""
        if self.tools is None:
            return []
        quotas = self._manager.quotas(self.principal.tenant)
        return [info for info in self.tools.catalogue() if quotas.may_call(info.name)]

    # -- usage -------------------------------------------------------------------------

    def usage(self, tenant: str | None = None) -> dict[str, Any]:
        """TenantUsage: each quota of the principal's tenant (or of ``tenant``, for a principal
        that reads across tenants; another's is NotFound otherwise), its limit and what is used."""
        if tenant is None or tenant == self.principal.tenant:
            tenant = self.principal.tenant
        elif not self.principal.sees_all or TENANT_PATTERN.fullmatch(tenant) is None:
            raise NotFound(f"tenant {_shown(tenant)!r} not found")
        quotas = self._manager.quotas(tenant)
        counted = self._executions.tenant_usage(tenant)
        used = {
            "concurrent_executions": counted.running,
            "queued_executions": self._manager.queued_of(tenant),
            "live_sessions": self._manager.live.open_of(tenant),
            "heap_bytes": counted.heap_bytes,
            "executions_per_minute": counted.started_this_minute,
            "tool_calls_per_minute": self._manager.tenant_tools.calls.used(tenant),
        }
        return {
            "tenant": tenant,
            "quotas": {name: {"limit": quotas.limit(name), "used": used[name]} for name in QUOTAS},
            "tool_servers": None if quotas.tool_servers is None else sorted(quotas.tool_servers),
        }

    # -- executions --------------------------------------------------------------------

    def submit(self, body: Mapping[str, Any], traceparent: str | None = None) -> str:
        """Accepts an execution; ``body`` is an ExecRequest the door validated. Returns its id.
        ``traceparent``: the caller's W3C trace context (the door's), which the execution's trace
        joins when traces are on; a value that is not one is ignored, as the standard says."""
        s = self.settings
        code: str = body["code"]
        size = len(code.encode("utf-8"))
        limit = min(s.max_code_bytes, CODE_LIMIT)  # a spec carries no more to a worker
        if size > limit:
            raise TooLarge(f"code is {size} bytes, the limit is {limit}")
        heap = body.get("heap")
        wall, timeout = (
            body.get("wall_timeout_secs"),
            body.get("execution_timeout_secs") or s.default_timeout_secs,
        )
        if wall is not None and wall < timeout:
            raise BadInput(
                f"wall_timeout_secs ({wall}) must be at least execution_timeout_secs ({timeout}): the wall "
                "time holds the script's own time and its waits on tool calls"
            )
        spec = spec_from_request(body, s, self.principal.tenant)
        if body.get("live"):
            return self._submit_live(body, spec)
        with _submit_errors(heap):
            return self._manager.submit(spec, traceparent)

    def _submit_live(self, body: Mapping[str, Any], spec: ExecutionSpec) -> str:
        """A step in its session's live context (:mod:`.executions.live`): it makes a snapshot only
        when it asks for one (the server's default does not apply)."""
        if spec.session is None:
            raise BadInput("live needs a session: the live context is the session's")
        spec = dataclasses.replace(spec, snapshot=body.get("snapshot") is True)
        try:
            with _submit_errors(spec.heap):
                return self._manager.live.submit(spec)
        except LiveConflict as e:
            raise Conflict(str(e)) from None
        except LiveUnavailable as e:
            raise BadInput(str(e)) from None

    def snapshot_session(self, session: str) -> dict[str, Any]:
        """LiveSessionHeap: the live session's heap now (made unless nothing changed)."""
        with _live_errors(session):
            return {"session": session, "heap": self._manager.live.snapshot(session, tenant=self._tenant)}

    def end_session(self, session: str, snapshot: bool = True) -> dict[str, Any]:
        """LiveSessionHeap: ends the live session, snapshotting it first unless told not to."""
        with _live_errors(session):
            return {
                "session": session,
                "heap": self._manager.live.end(session, snapshot, tenant=self._tenant),
            }

    def get(self, execution_id: str, wait_ms: int = 0) -> dict[str, Any]:
        """ExecutionInfo; with ``wait_ms``, once the execution is terminal or that long passed.
        The wait is on the manager's completion event, never a poll."""
        record = self.record(execution_id, wait_ms)
        return execution_info(record, tenant=self._foreign(record.tenant))

    def record(self, execution_id: str, wait_ms: int = 0) -> ExecutionRecord:
        """The record of an execution the principal may read (NotFound otherwise, at once: another
        tenant's is never waited on), once it stopped or ``wait_ms`` passed. A long-poll reads the
        record only when the wait does not hand it over (the waiters know the tenant of what is
        live here)."""
        if not wait_ms:
            return self._readable(execution_id)
        if not EXECUTION_ID.fullmatch(execution_id):
            raise _execution_not_found(execution_id)
        record = self._manager.wait(execution_id, wait_ms / 1000, self._reads) or self._executions.get(
            execution_id
        )
        if not self._sees(record):
            raise _execution_not_found(execution_id)
        assert record is not None
        return record

    def follow(self, execution_id: str, listener: Callable[[str | None], None]) -> Callable[[], None]:
        """``listener`` hears of each batch of console output, then (None) of the end; see
        :meth:`ExecutionManager.follow`. Returns the function that stops it. NotFound for an
        execution the principal may not read."""
        self._readable(execution_id)
        return self._manager.follow(execution_id, listener)

    def tool_calls(self, execution_id: str) -> dict[str, Any]:
        """The records of the execution's tool calls (ExecutionToolCalls), in call order. There are
        at most ``max_tool_calls + 1`` (of the calls past the budget only the first is recorded)."""
        self._readable(execution_id)
        if self._tool_calls is None:
            return {"execution_id": execution_id, "tool_calls": []}
        recorder = self._manager.tool_records
        if recorder is not None:
            recorder.flush(execution_id)  # what this process holds in memory yet
        calls = self._tool_calls.list(execution_id, limit=TOOL_CALLS_READ)
        return {"execution_id": execution_id, "tool_calls": [c.as_json() for c in calls]}

    def output(
        self,
        execution_id: str,
        *,
        line_offset: int | None = None,
        line_limit: int | None = None,
        byte_offset: int | None = None,
        byte_limit: int | None = None,
    ) -> dict[str, Any]:
        """A page of console output (ExecutionOutput): by lines, or by bytes when a byte
        parameter is given; never both."""
        byte_mode = byte_offset is not None or byte_limit is not None
        if byte_mode and (line_offset is not None or line_limit is not None):
            raise BadInput("use either line_offset/line_limit or byte_offset/byte_limit, not both")
        record = self._readable(execution_id)
        try:
            if byte_mode:
                page = self._output.read_bytes(
                    execution_id, byte_offset or 0, byte_limit or OUTPUT_BYTE_LIMIT
                )
            else:
                page = self._output.read_lines(
                    execution_id, line_offset or 0, line_limit or OUTPUT_LINE_LIMIT
                )
        except ExecutionNotFound:  # pruned since the record was read
            raise _execution_not_found(execution_id) from None
        return {
            "execution_id": execution_id,
            "status": record.status,
            "data": page.data,
            "start_line": page.start_line,
            "end_line": page.end_line,
            "start_byte": page.start_byte,
            "end_byte": page.end_byte,
            "next_line_offset": page.next_line_offset,
            "next_byte_offset": page.next_byte_offset,
            "has_more": page.has_more,
            "total_lines": page.total_lines,
            "total_bytes": page.total_bytes,
        }

    def cancel(self, execution_id: str) -> dict[str, Any]:
        """CancelResult: ``ok`` true when the cancel was accepted, else false with the reason
        (unknown, or already finished: the contract answers both with 400). Another tenant's
        execution is unknown (an admin's too: it reads across tenants, it cancels its own)."""
        valid = EXECUTION_ID.fullmatch(execution_id) and self._owns(self._executions.get(execution_id))
        outcome = self._manager.cancel(execution_id) if valid else CancelOutcome.UNKNOWN
        if outcome is CancelOutcome.UNKNOWN:
            return {"ok": False, "error": f"execution {_shown(execution_id)!r} not found"}
        if outcome is CancelOutcome.ALREADY_FINISHED:
            record = self._executions.get(execution_id)
            status = record.status if record else "finished"
            return {"ok": False, "error": f"execution already finished ({status})"}
        return {"ok": True, "error": None}

    def approve(self, execution_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Decides every tool call a waiting execution holds (``body``: an ApprovalRequest the door
        validated, from the approver); returns its ExecutionInfo, running again. NotFound, Conflict
        (not waiting, or another decision first), BadInput (decisions that do not name each
        pending call once)."""
        if not EXECUTION_ID.fullmatch(execution_id) or self._approvals is None:
            raise _execution_not_found(execution_id)
        if not self._owns(self._executions.get(execution_id)):  # its tenant's approvers decide
            raise _execution_not_found(execution_id)
        decisions = [Decision(d["call_id"], d["approved"], d.get("reason")) for d in body["decisions"]]
        try:
            record = self._approvals.decide(execution_id, decisions)
        except UnknownExecution:
            raise _execution_not_found(execution_id) from None
        except NotWaiting as e:
            raise Conflict(str(e)) from None
        except BadDecisions as e:
            raise BadInput(str(e)) from None
        return execution_info(record, tenant=self._foreign(record.tenant))

    def list_executions(
        self,
        limit: int = 100,
        *,
        status: str | None = None,
        session: str | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """ExecutionList, newest first: the tenant's (every tenant's for an admin)."""
        try:
            page = self._executions.list_page(
                limit,
                status=cast(ExecutionStatus, status),
                session=session,
                cursor=cursor,
                tenant=self._reads,
            )
        except InvalidCursor as e:
            raise BadInput(str(e)) from None
        return {
            "executions": [_summary(r, self._foreign(r.tenant)) for r in page.items],
            "next_cursor": page.next_cursor,
        }

    # -- sessions ----------------------------------------------------------------------

    def sessions(self, limit: int = 100, *, cursor: str | None = None) -> dict[str, Any]:
        """SessionList, latest activity first: the tenant's (every tenant's for an admin, each
        (tenant, session) one session, another tenant's naming it)."""
        try:
            page = self._executions.sessions(limit, cursor=cursor, tenant=self._reads)
        except InvalidCursor as e:
            raise BadInput(str(e)) from None
        stored = self._stored(s.latest_heap for s in page.items)
        live = self._manager.live.statuses([(s.tenant, s.session) for s in page.items])
        return {
            "sessions": [
                _session(s, stored, live.get((s.tenant, s.session)), self._foreign(s.tenant))
                for s in page.items
            ],
            "next_cursor": page.next_cursor,
        }

    def session_log(self, session: str, limit: int = 100, *, cursor: str | None = None) -> dict[str, Any]:
        """SessionLog, oldest first; NotFound when no retained execution belongs to it. The
        tenant's session of that name (an admin's: every tenant's, another tenant's entries naming it)."""
        try:
            page = self._executions.session_log(session, limit, cursor=cursor, tenant=self._reads)
        except InvalidCursor as e:
            raise BadInput(str(e)) from None
        if page is None:
            raise NotFound(f"session {_shown(session)!r} not found: no retained execution belongs to it")
        stored = self._stored(r.heap for r in page.items)
        return {
            "session": session,
            "executions": [_log_entry(r, stored, self._foreign(r.tenant)) for r in page.items],
            "next_cursor": page.next_cursor,
        }

    def _stored(self, keys: Iterable[str | None]) -> set[str]:
        """Which of a page's heap keys are still stored (one question for the page): a session's
        log keeps the keys its executions produced, and retention or a delete may have removed
        one."""
        with _heap_errors():
            return self._catalogue.stored(keys, tenant=self._reads)

    # -- heaps -------------------------------------------------------------------------

    def heap(self, key: str) -> dict[str, Any]:
        """HeapInfo (the tenant's: its session, tags, creation and use); NotFound when the tenant
        does not own the heap (an admin's too: heaps are read per owner)."""
        with _heap_errors(check_heap_key(key)):
            meta = self._catalogue.meta(key, tenant=self._tenant)
        if meta is None:
            raise NotFound(f"heap {key} not found")
        return _heap_info(meta)

    def patch_heap_tags(self, key: str, patch: Mapping[str, str | None]) -> dict[str, Any]:
        """Applies a JSON merge patch (``{"k": "v"}`` sets, ``{"k": null}`` removes) to the
        heap's tags; returns its HeapInfo."""
        return self._change_tags(key, patch, replace=False)

    def replace_heap_tags(self, key: str, tags: Mapping[str, str]) -> dict[str, Any]:
        """Makes ``tags`` all of the heap's tags; returns its HeapInfo."""
        return self._change_tags(key, tags, replace=True)

    def remove_heap_tags(self, key: str, names: list[str] | None) -> dict[str, Any]:
        """Removes the tags named (all of them when ``names`` is None); returns its HeapInfo."""
        if names is None:
            return self._change_tags(key, {}, replace=True)
        return self._change_tags(key, dict.fromkeys(names), replace=False)

    def _change_tags(self, key: str, patch: Mapping[str, str | None], *, replace: bool) -> dict[str, Any]:
        with _heap_errors(check_heap_key(key)):
            return _heap_info(self._catalogue.patch_tags(key, patch, replace=replace, tenant=self._tenant))

    def query_heaps(
        self, tags: Mapping[str, str], limit: int = 100, *, cursor: str | None = None
    ) -> dict[str, Any]:
        """HeapList: the tenant's heaps whose tags (its own) hold every pair of ``tags``, newest first."""
        with _heap_errors():
            page = self._catalogue.query(tags, limit, cursor=cursor, tenant=self._tenant)
        return {"heaps": [_heap_info(m) for m in page.items], "next_cursor": page.next_cursor}

    def delete_heap(self, key: str) -> dict[str, Any]:
        """Removes the tenant's ownership of a heap and its tags of it, and the heap with its last
        owner's; Conflict while a queued or running execution of any node resumes it (of the
        tenant's, while others own it too); NotFound when the tenant does not own it."""
        with _heap_errors(check_heap_key(key)):
            removed = self._catalogue.delete(key, tenant=self._tenant)
        if not removed:
            raise NotFound(f"heap {key} not found")
        return {"ok": True}


@contextlib.contextmanager
def _submit_errors(heap: str | None) -> Iterator[None]:
    """A submit's refusals as the contract gives them: a quota 429 (with its Retry-After), a full
    queue 429, shutting down or a heap store away 503, an unknown heap 404, one not signed by this
    deployment 400 (stored, but never restored)."""
    try:
        yield
    except QuotaReached as e:
        raise QuotaExceeded(e) from None
    except QueueFull as e:
        raise Busy(str(e)) from None
    except (ShuttingDown, HeapStoreUnavailable) as e:
        raise Unavailable(str(e)) from None
    except HeapNotFound:
        raise NotFound(f"heap {heap} not found") from None
    except HeapNotSigned as e:
        raise BadInput(str(e)) from None


@contextlib.contextmanager
def _heap_errors(key: str | None = None) -> Iterator[None]:
    """The heap catalogue's refusals as the contract's: an unknown heap 404, one in use 409, tags
    over their limits or a bad cursor 400, a heap store away 503."""
    try:
        yield
    except HeapNotFound:
        raise NotFound(f"heap {key} not found") from None
    except HeapInUse as e:
        raise Conflict(str(e)) from None
    except (HeapTagLimit, InvalidCursor) as e:
        raise BadInput(str(e)) from None
    except HeapStoreUnavailable as e:
        raise Unavailable(str(e)) from None


def check_heap_key(key: str) -> str:
    """``key`` when it is a heap key (64 lowercase hex); BadInput otherwise."""
    try:
        return validate_heap_key(key)
    except InvalidHeapKey as e:
        raise BadInput(str(e)) from None


@contextlib.contextmanager
def _live_errors(session: str) -> Iterator[None]:
    """A live-session command's refusals as the contract gives them."""
    try:
        yield
    except NotLive:
        raise NotFound(f"session {_shown(session)!r} is not live here") from None
    except ShuttingDown as e:
        raise Unavailable(str(e)) from None
    except LiveSessionError as e:
        raise Unavailable(str(e)) from None


def _session(
    summary: SessionSummary, stored: set[str], live: dict[str, Any] | None, tenant: bool
) -> dict[str, Any]:
    shown = {
        "session": summary.session,
        "executions": summary.executions,
        "first_activity_at": summary.first_activity_at,
        "last_activity_at": summary.last_activity_at,
        "latest_heap": summary.latest_heap,
        "latest_heap_stored": None if summary.latest_heap is None else summary.latest_heap in stored,
        "live": live,
    }
    if tenant:
        shown["tenant"] = summary.tenant
    return shown


def _log_entry(record: ExecutionRecord, stored: set[str], tenant: bool) -> dict[str, Any]:
    entry = {
        "execution_id": record.execution_id,
        "status": record.status,
        "heap_in": record.heap_in,
        "heap": record.heap,
        "heap_stored": None if record.heap is None else record.heap in stored,
        "tags": record.tags,
        "started_at": record.started_at,
        "completed_at": record.completed_at,
    }
    if tenant:
        entry["tenant"] = record.tenant
    return entry


def _heap_info(meta: HeapMeta) -> dict[str, Any]:
    """A heap as the contract's HeapInfo (the catalogue's ``tags``: patched, else the first)."""
    return {
        "heap": meta.key,
        "size_bytes": meta.size,
        "created_at": meta.created_at,
        "last_used_at": meta.last_used_at or meta.created_at,
        "session": meta.session,
        "tags": meta.tags,
    }
